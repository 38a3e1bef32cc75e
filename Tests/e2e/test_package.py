"""The release packages (scripts/package, docs/packaging.md) as an operator gets them.

- the tarball unpacks into an empty directory, its binary needs no Swift runtime, passes `--check`
  on the shipped flag file and serves an origin's stream with it;
- the .deb installs with `dpkg -i` (system user, conffile, units that `systemd-analyze verify`
  accepts, a man page), then removes and purges cleanly; lintian finds no error in it;
- the OCI image (when scripts/package made one with --image): its config, and under `buildah run`
  (vfs storage of its own, chroot isolation) its flag file passes `--check` and the gateway in it
  answers `/healthz` and serves a stream as uid 65532; the Kubernetes manifests name that image's tag;
- one version everywhere: file names, `--version`, the control file, the man page,
  `lifeline_build_info` and the image's label.

The packages are built once: LIFELINE_DIST names a directory that `scripts/package` filled
(scripts/test does that before the e2e suite); without it this module runs scripts/package
itself (a release build: minutes).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import read_event_ids

REPO = Path(__file__).resolve().parents[2]
# What the binary may link (docs/packaging.md, "Runtime dependencies"): glibc, the C++ runtime
# the static Swift stdlib needs, OpenSSL 3 and nghttp2. Never a libswift*.so.
ALLOWED_LIBS = re.compile(
    r"^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux[-\w.]*\.so\.\d"
    r"|libssl\.so\.3|libcrypto\.so\.3|libnghttp2\.so\.14|libstdc\+\+\.so\.6|libgcc_s\.so\.1)$")


def _run(argv: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    env = os.environ.get("LIFELINE_DIST")
    if env:
        directory = Path(env)
        if not directory.is_absolute():
            directory = (REPO / directory).resolve()
    else:
        directory = tmp_path_factory.mktemp("dist")
        result = _run([str(REPO / "scripts" / "package"), f"--out={directory}"], timeout=1800, cwd=REPO)
        assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    tarballs = sorted(directory.glob("lifeline-*-linux-*.tar.gz"))
    debs = sorted(directory.glob("lifeline_*_*.deb"))
    assert len(tarballs) == 1 and len(debs) == 1, \
        f"{directory} should hold one tarball and one .deb from scripts/package: {sorted(os.listdir(directory))}"
    return directory


def _tarball(dist: Path) -> Path:
    return next(dist.glob("lifeline-*-linux-*.tar.gz"))


def _deb(dist: Path) -> Path:
    return next(dist.glob("lifeline_*_*.deb"))


@pytest.fixture(scope="module")
def version(dist) -> str:
    """The version in the file names; every other place must say the same."""
    tar_version = re.fullmatch(r"lifeline-(.+)-linux-([\w]+)\.tar\.gz", _tarball(dist).name).group(1)
    deb_version = re.fullmatch(r"lifeline_(.+)_([\w]+)\.deb", _deb(dist).name).group(1)
    assert tar_version == deb_version
    return tar_version


@pytest.fixture(scope="module")
def unpacked(dist, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("unpacked")
    assert not any(target.iterdir())
    with tarfile.open(_tarball(dist)) as archive:
        names = archive.getnames()
        archive.extractall(target, filter="data")
    top = {name.split("/")[0] for name in names}
    assert top == {_tarball(dist).name.removesuffix(".tar.gz")}, f"one top directory named after the tarball: {top}"
    return target / top.pop()


def test_tarball_holds_what_an_operator_needs(unpacked, version):
    names = sorted(p.name for p in unpacked.iterdir())
    assert names == sorted(["lifeline", "lifeline.flags", "lifeline.service", "lifeline.socket", "lifeline.1",
                            "LICENSE", "THIRD-PARTY-LICENSES", "README"]), names
    binary = unpacked / "lifeline"
    assert os.access(binary, os.X_OK)
    assert _run([str(binary), "--version"]).stdout.strip() == f"lifeline {version}"
    # The shipped files are the repository's.
    for name in ("lifeline.flags", "lifeline.service", "lifeline.socket"):
        assert (unpacked / name).read_text() == (REPO / "deploy" / name).read_text(), name
    assert (unpacked / "lifeline.1").read_text() == _run([str(binary), "man-page"]).stdout
    assert f'.TH LIFELINE 1 "" "lifeline {version}"' in (unpacked / "lifeline.1").read_text()
    third_party = (unpacked / "THIRD-PARTY-LICENSES").read_text()
    for library in ("swift-nio", "swift-log", "swift-prometheus", "swift-atomics"):
        assert f"==== {library}: LICENSE" in third_party, library


def test_tarball_binary_needs_no_swift_runtime(unpacked):
    result = _run(["ldd", str(unpacked / "lifeline")])
    assert result.returncode == 0, result.stderr
    libraries = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert not [lib for lib in libraries if "swift" in lib.lower()], result.stdout
    unexpected = [lib for lib in libraries if not ALLOWED_LIBS.match(os.path.basename(lib))]
    assert not unexpected, f"not in docs/packaging.md's list: {unexpected}\n{result.stdout}"


def test_tarball_binary_checks_the_shipped_flag_file_and_serves_with_it(unpacked, processes, version):
    binary = str(unpacked / "lifeline")
    # From inside the unpacked directory, as the README there says.
    check = _run([binary, "--check", "--flagfile=lifeline.flags"], cwd=unpacked)
    assert check.returncode == 0, check.stderr
    assert "configuration is valid" in check.stdout

    origin = processes.start("demo-origin", [binary, "demo-origin", "--listen=127.0.0.1:0", "--tick=100ms",
                                             "--drop-every=0"])
    # The shipped file with its addresses pointed at this test: listeners on free ports, routes
    # at the origin. Everything else (heartbeats, replay, limits) is as shipped.
    text = (unpacked / "lifeline.flags").read_text()
    text = re.sub(r"^--listen=.*$", "--listen=127.0.0.1:0", text, flags=re.M)
    text = re.sub(r"^--admin-listen=.*$", "--admin-listen=127.0.0.1:0", text, flags=re.M)
    text = re.sub(r"^--route=(/\S*)=http://127\.0\.0\.1:3000", rf"--route=\1={origin.url}", text, flags=re.M)
    flags = unpacked / "test.flags"
    flags.write_text(text)
    assert _run([binary, "--check", f"--flagfile={flags}"]).returncode == 0

    gateway = processes.start("lifeline", [binary, f"--flagfile={flags}"])
    admin_url = gateway.admin_url()

    # Two events of the demo origin's stream through the gateway.
    with urllib.request.urlopen(f"{gateway.url}/events", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        ids = read_event_ids(response, 2)
        assert ids[1] == ids[0] + 1
    with urllib.request.urlopen(f"{admin_url}/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert f'lifeline_build_info{{version="{version}"}} 1' in metrics, \
        [line for line in metrics.splitlines() if "build_info" in line]


# --------------------------------------------------------------------------------------------
# The Debian package


def test_deb_control_file(dist, version):
    deb = _deb(dist)
    fields = {}
    for line in _run(["dpkg-deb", "-f", str(deb)]).stdout.splitlines():
        if not line.startswith(" ") and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    assert fields["Package"] == "lifeline"
    assert fields["Version"] == version
    assert fields["Architecture"] == _run(["dpkg", "--print-architecture"]).stdout.strip()
    depends = [d.split()[0] for d in fields["Depends"].split(", ")]
    # Computed by dpkg-shlibdeps from the binary: these, and no Swift runtime package.
    for package in ("libc6", "libssl3", "libnghttp2-14", "adduser"):
        assert package in depends, fields["Depends"]
    assert not [d for d in depends if "swift" in d], fields["Depends"]
    contents = _run(["dpkg-deb", "-c", str(deb)]).stdout
    for path in ("./usr/bin/lifeline", "./lib/systemd/system/lifeline.service", "./lib/systemd/system/lifeline.socket",
                 "./etc/lifeline/lifeline.flags", "./usr/share/man/man1/lifeline.1.gz",
                 "./usr/share/doc/lifeline/copyright", "./usr/share/doc/lifeline/changelog.gz"):
        assert re.search(rf" {re.escape(path)}$", contents, re.M), f"{path} missing:\n{contents}"
    owners = {line.split()[1] for line in contents.splitlines()}
    assert owners == {"root/root"}, owners


def test_deb_has_no_lintian_errors(dist):
    lintian = shutil.which("lintian")
    if lintian is None:
        pytest.fail("lintian missing: run scripts/setup (Debian package lintian)", pytrace=False)
    result = _run([lintian, "--fail-on", "error", str(_deb(dist))], timeout=300)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert result.returncode == 0 and not errors, result.stdout + result.stderr


def _dpkg_status(package: str) -> str:
    return _run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package]).stdout.strip()


def test_deb_installs_verifies_and_purges(dist, version, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root (CI runs as root)")
    if _dpkg_status("lifeline") not in ("", "un", "pn"):
        pytest.fail("a lifeline package is already installed here; this test installs and purges its own",
                    pytrace=False)
    deb = _deb(dist)
    try:
        result = _run(["dpkg", "-i", str(deb)], timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _dpkg_status("lifeline") == "ii"

        # postinst made the system user the unit runs as.
        user = _run(["getent", "passwd", "lifeline"]).stdout.strip().split(":")
        assert len(user) == 7 and int(user[2]) < 1000 and user[6].endswith("nologin"), user

        assert _run(["/usr/bin/lifeline", "--version"]).stdout.strip() == f"lifeline {version}"
        check = _run(["/usr/bin/lifeline", "--check", "--flagfile=/etc/lifeline/lifeline.flags"])
        assert check.returncode == 0, check.stderr
        assert "/etc/lifeline/lifeline.flags" in _run(["dpkg-query", "-W", "-f=${Conffiles}", "lifeline"]).stdout

        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.fail("systemd-analyze missing: run scripts/setup (Debian package systemd)", pytrace=False)
        verify = _run([analyze, "verify", "--man=no", "/lib/systemd/system/lifeline.socket",
                       "/lib/systemd/system/lifeline.service"])
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert not [line for line in (verify.stdout + verify.stderr).splitlines() if "lifeline" in line], \
            verify.stdout + verify.stderr
        service = Path("/lib/systemd/system/lifeline.service").read_text()
        assert "ExecStart=/usr/bin/lifeline --flagfile=/etc/lifeline/lifeline.flags" in service
        assert "/usr/local/bin" not in re.sub(r"^#.*$", "", service, flags=re.M)

        # The man page renders without a warning.
        page = gzip.decompress(Path("/usr/share/man/man1/lifeline.1.gz").read_bytes()).decode()
        assert f'"lifeline {version}"' in page
        (tmp_path / "lifeline.1").write_text(page)
        groff = _run(["groff", "-man", "-ww", "-z", "-Tutf8", str(tmp_path / "lifeline.1")])
        assert groff.returncode == 0 and groff.stderr == "", groff.stderr

        # Remove keeps the conffile; purge takes it and the directory, and leaves the user.
        result = _run(["dpkg", "-r", "lifeline"], timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not Path("/usr/bin/lifeline").exists()
        assert not Path("/lib/systemd/system/lifeline.service").exists()
        assert Path("/etc/lifeline/lifeline.flags").exists(), "remove keeps the operator's flag file"
        result = _run(["dpkg", "-P", "lifeline"], timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _dpkg_status("lifeline") in ("", "un", "pn")
        assert not Path("/etc/lifeline").exists()
        assert _run(["getent", "passwd", "lifeline"]).returncode == 0, "purge leaves the system user"
    finally:
        if _dpkg_status("lifeline") not in ("", "un", "pn"):
            _run(["dpkg", "-P", "lifeline"], timeout=120)


# --------------------------------------------------------------------------------------------
# The OCI image (scripts/package --image)


def _image(dist: Path) -> Path | None:
    return next(iter(sorted(dist.glob("lifeline-*-linux-*.oci.tar"))), None)


@pytest.fixture(scope="module")
def image_container(dist, tmp_path_factory):
    """A working container of the image, in a buildah storage of its own (vfs, chroot isolation)."""
    image = _image(dist)
    if image is None:
        pytest.skip("no image in the packages: scripts/package --image makes it (scripts/test does when buildah is there)")
    buildah = shutil.which("buildah")
    if buildah is None:
        pytest.fail("buildah missing: run scripts/setup (Debian package buildah)", pytrace=False)
    root = tmp_path_factory.mktemp("containers")
    storage = [buildah, "--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
    made = _run([*storage, "from", "--quiet", f"oci-archive:{image}"], timeout=300, env=env)
    assert made.returncode == 0, made.stderr
    container = made.stdout.strip().splitlines()[-1]
    yield storage, env, container
    _run([*storage, "rm", container], timeout=120, env=env)
    shutil.rmtree(root, ignore_errors=True)


def test_image_config(image_container, version):
    storage, env, container = image_container
    inspected = _run([*storage, "inspect", "--type", "container", container], env=env)
    assert inspected.returncode == 0, inspected.stderr
    oci = json.loads(inspected.stdout)["OCIv1"]
    config = oci["config"]
    assert config["User"] == "65532:65532", config
    assert config["Labels"]["org.opencontainers.image.version"] == version
    assert config["Entrypoint"] == ["/usr/bin/lifeline"]
    assert config["Cmd"] == ["--flagfile=/etc/lifeline/lifeline.flags"]
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in config["Env"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    assert len(oci["rootfs"]["diff_ids"]) == 1, "FROM scratch: one layer, no base image"


def test_image_checks_its_flag_file_and_serves_as_its_user(image_container, processes, lifeline_bin, version):
    storage, env, container = image_container
    run = [*storage, "run", container, "--"]
    assert _run([*run, "/usr/bin/lifeline", "--version"], env=env).stdout.strip() == f"lifeline {version}"
    check = _run([*run, "/usr/bin/lifeline", "--check", "--flagfile=/etc/lifeline/lifeline.flags"], env=env)
    assert check.returncode == 0, check.stderr
    assert "--listen=0.0.0.0:8080" in check.stdout and "--admin-listen=0.0.0.0:9090" in check.stdout

    # Chroot isolation shares the host's network: the container's listeners are on 127.0.0.1.
    origin = processes.start("demo-origin", [lifeline_bin, "demo-origin", "--listen=127.0.0.1:0", "--drop-every=0"])
    proc = processes.start("image", [*run, "/usr/bin/lifeline", "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
                                     f"--route=/={origin.url}"], env=env, ready_timeout=60)
    admin_url = proc.admin_url()
    with urllib.request.urlopen(f"{admin_url}/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=5) as response:
        assert f'lifeline_build_info{{version="{version}"}} 1' in response.read().decode()
    # And it serves: two events of the origin's stream through the gateway in the image.
    with urllib.request.urlopen(f"{proc.url}/events", timeout=10) as response:
        ids = read_event_ids(response, 2)
    # The process runs as the image's user, not as root.
    pids = _run(["pgrep", "-f", f"^/usr/bin/lifeline --listen=127.0.0.1:0 .*{re.escape(origin.url)}"]).stdout.split()
    assert pids, "the container's lifeline process"
    uids = {re.search(r"^Uid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1) for pid in pids}
    assert uids == {"65532"}, uids


def test_kubernetes_manifests_name_the_image_that_is_built(dist, version):
    if _image(dist) is None:
        pytest.skip("no image in the packages: scripts/package --image makes it")
    for name in ("lifeline.yaml", "lifeline-scale-out.yaml"):
        text = (REPO / "deploy" / "kubernetes" / name).read_text()
        images = re.findall(r"^\s*image:\s*(\S+)$", text, re.M)
        assert images and all(re.fullmatch(rf"(\S+/)?lifeline:{re.escape(version)}", i) for i in images), (name, images)
        assert re.findall(r"runAsUser: (\d+)", text) == ["65532"], f"{name}: the image's user"
        assert "/etc/lifeline/lifeline.flags" in text
