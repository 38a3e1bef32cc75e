"""deploy/: the systemd units and the Kubernetes manifests are valid and fit the drain window;
the scale-out examples (deploy/scale-out/, deploy/kubernetes/lifeline-scale-out.yaml) pass
`lifeline --check` and fit the base ones."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCALE_OUT = DEPLOY / "scale-out"


def _drain_window_seconds(flags_text: str, default: float = 10.0) -> float:
    m = re.search(r"^--drain-window=(\d+)s\s*$", flags_text, re.M)
    return float(m.group(1)) if m else default


def test_systemd_units_verify_and_outlast_the_drain(tmp_path, lifeline_bin):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze missing: run scripts/setup (Debian package systemd)", pytrace=False)
    service = (DEPLOY / "lifeline.service").read_text()
    socket = (DEPLOY / "lifeline.socket").read_text()
    # The unit names /usr/local/bin/lifeline; verify needs the executables to exist.
    (tmp_path / "lifeline.service").write_text(service.replace("/usr/local/bin/lifeline", lifeline_bin))
    (tmp_path / "lifeline.socket").write_text(socket)
    result = subprocess.run([analyze, "verify", "--man=no", "lifeline.socket", "lifeline.service"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "lifeline" in line and "Failed to" not in line or "Unknown" in line or "error" in line.lower()]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not problems, problems

    assert re.search(r"^Type=notify$", service, re.M) and re.search(r"^NotifyAccess=all$", service, re.M)
    assert re.search(r"^KillSignal=SIGTERM$", service, re.M)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", service, re.M)
    assert "kill -s USR2" in service, "the upgrade command is documented in the unit"
    timeout = float(re.search(r"^TimeoutStopSec=(\d+)s$", service, re.M).group(1))
    window = _drain_window_seconds((DEPLOY / "lifeline.flags").read_text())
    assert timeout > window + 2, f"TimeoutStopSec={timeout} must outlast the {window} s drain window"
    # The socket unit binds what the sample flag file listens on.
    flags = (DEPLOY / "lifeline.flags").read_text()
    for address in re.findall(r"^ListenStream=(\S+)$", socket, re.M):
        assert re.search(rf"^--(listen|admin-listen|tls-listen)={re.escape(address)}$", flags, re.M), \
            f"{address} in lifeline.socket has no matching flag in lifeline.flags"


@pytest.mark.parametrize("name", ["lifeline.yaml", "lifeline-scale-out.yaml"])
def test_kubernetes_manifests_validate_and_outlast_the_drain(name):
    validate = shutil.which("kubernetes-validate")
    if validate is None:
        pytest.fail("kubernetes-validate missing: run scripts/setup (PyPI kubernetes-validate)", pytrace=False)
    manifest = DEPLOY / "kubernetes" / name
    result = subprocess.run([validate, "--strict", str(manifest)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    text = manifest.read_text()
    grace = float(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))
    pause = float(re.search(r'command: \["/bin/sleep", "(\d+)"\]', text).group(1))
    window = _drain_window_seconds(text)
    assert grace > pause + window + 2, f"grace {grace} s < preStop {pause} s + drain window {window} s"
    assert re.search(r"readinessProbe:\s+httpGet:\s+path: /readyz", text)
    assert re.search(r"livenessProbe:\s+httpGet:\s+path: /healthz", text)


# --------------------------------------------------------------------------------------------
# Scale-out (docs/scale-out.md, "Deploying several instances")


def _secret_files(directory: Path) -> tuple[Path, Path]:
    secret = directory / "redis-key-secret"
    secret.write_bytes(os.urandom(24).hex().encode() + b"\n")
    password = directory / "redis-password"
    password.write_text("not-the-real-password\n")
    return secret, password


def _scale_out_flags(directory: Path, redis_url: str) -> Path:
    """A copy of deploy/scale-out/lifeline-redis.flags naming temporary files and REDIS_URL."""
    secret, password = _secret_files(directory)
    text = (SCALE_OUT / "lifeline-redis.flags").read_text()
    for path, real in (("/etc/lifeline/redis-key-secret", secret), ("/etc/lifeline/redis-password", password)):
        assert re.search(rf"^--redis-[a-z-]+-file={re.escape(path)}$", text, re.M), f"{path} not in the flag file"
        text = text.replace(path, str(real))
    text, n = re.subn(r"^--redis=\S+$", f"--redis={redis_url}", text, flags=re.M)
    assert n == 1, "the flag file has exactly one active --redis= line"
    copy = directory / "lifeline-redis.flags"
    copy.write_text(text)
    return copy


def _check(lifeline_bin: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([lifeline_bin, "--check", *args], capture_output=True, text=True, timeout=30,
                          cwd=REPO, env=env)


def test_scale_out_flag_file_passes_check_without_touching_redis(tmp_path, lifeline_bin):
    text = (SCALE_OUT / "lifeline-redis.flags").read_text()
    active = {m.group(1) for m in re.finditer(r"^--([a-z-]+)=", text, re.M)}
    assert {"redis", "redis-key-secret-file", "redis-password-file", "redis-lease"} <= active, active
    assert "instance-name" not in active, "--instance-name is left to its default (host name and pid)"

    # A Redis URL on a port where something listens but never answers: --check must pass without
    # connecting (nothing reaches the listener), and so it passes when Redis is down, too.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        flags = _scale_out_flags(tmp_path, f"redis://127.0.0.1:{port}/0")
        result = _check(lifeline_bin, "--flagfile=deploy/lifeline.flags", f"--flagfile={flags}")
        assert result.returncode == 0, result.stdout + result.stderr
        readable, _, _ = select.select([listener], [], [], 0.3)
        assert not readable, "lifeline --check connected to Redis"
    assert re.search(rf"^--redis=redis://127\.0\.0\.1:{port}/0$", result.stdout, re.M), result.stdout
    assert re.search(rf"^--redis-key-secret-file={re.escape(str(tmp_path))}/redis-key-secret$", result.stdout, re.M)
    assert "not-the-real-password" not in result.stdout, "--check printed the password"

    # A closed port: the same.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    flags = _scale_out_flags(tmp_path, f"redis://127.0.0.1:{closed}/0")
    result = _check(lifeline_bin, "--flagfile=deploy/lifeline.flags", f"--flagfile={flags}")
    assert result.returncode == 0, result.stdout + result.stderr

    # Included from the base flag file instead (the other way the file documents): the same.
    base = tmp_path / "lifeline.flags"
    base.write_text((DEPLOY / "lifeline.flags").read_text() + "\n--flagfile=lifeline-redis.flags\n")
    result = _check(lifeline_bin, f"--flagfile={base}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"--redis=redis://127.0.0.1:{closed}/0" in result.stdout

    # And --check does read the files: a short secret fails it.
    (tmp_path / "redis-key-secret").write_text("short\n")
    result = _check(lifeline_bin, "--flagfile=deploy/lifeline.flags", f"--flagfile={flags}")
    assert result.returncode == 1 and "at least 16" in result.stderr, result.stdout + result.stderr


def _unit_lines(text: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", text, re.M)


def test_scale_out_drop_in_verifies_with_the_base_unit(tmp_path, lifeline_bin):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze missing: run scripts/setup (Debian package systemd)", pytrace=False)
    service = (DEPLOY / "lifeline.service").read_text()
    drop_in = (SCALE_OUT / "lifeline-scale-out.conf").read_text()

    def verify(drop_in_text: str) -> subprocess.CompletedProcess:
        units = tmp_path / "units"
        shutil.rmtree(units, ignore_errors=True)
        (units / "lifeline.service.d").mkdir(parents=True)
        (units / "lifeline.service").write_text(service.replace("/usr/local/bin/lifeline", lifeline_bin))
        (units / "lifeline.socket").write_text((DEPLOY / "lifeline.socket").read_text())
        (units / "lifeline.service.d" / "scale-out.conf").write_text(
            drop_in_text.replace("/usr/local/bin/lifeline", lifeline_bin))
        return subprocess.run([analyze, "verify", "--man=no", "lifeline.socket", "lifeline.service"],
                              cwd=units, capture_output=True, text=True, timeout=60)

    result = verify(drop_in)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "lifeline" in line and "Failed to" not in line or "Unknown" in line or "error" in line.lower()]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not problems, problems
    # The drop-in was read: a bad key in it is reported.
    broken = verify(drop_in + "\nNoSuchSetting=1\n")
    assert "scale-out.conf" in broken.stdout + broken.stderr and "NoSuchSetting" in broken.stdout + broken.stderr, \
        broken.stdout + broken.stderr

    # Co-located Redis only: the ordering is there, commented out.
    assert re.search(r"^#Wants=redis-server\.service$", drop_in, re.M)
    assert re.search(r"^#After=redis-server\.service$", drop_in, re.M)

    # Each command line is reset, then given again as the base unit's plus the scale-out flags.
    credentials = dict(line.split(":", 1) for line in _unit_lines(drop_in, "LoadCredential"))
    assert set(credentials) == {"redis-key-secret", "redis-password"}, credentials
    extra = ("--flagfile=/etc/lifeline/lifeline-redis.flags"
             " --redis-key-secret-file=${CREDENTIALS_DIRECTORY}/redis-key-secret"
             " --redis-password-file=${CREDENTIALS_DIRECTORY}/redis-password")
    for key in ("ExecStartPre", "ExecStart", "ExecReload"):
        base_lines, lines = _unit_lines(service, key), _unit_lines(drop_in, key)
        assert lines[0] == "", f"{key}= must be reset before it is given again"
        want = [line.replace("--flagfile=/etc/lifeline/lifeline.flags", "--flagfile=/etc/lifeline/lifeline.flags " + extra)
                for line in base_lines]
        assert lines[1:] == want, f"{key}: {lines[1:]} != {want}"

    # The check command runs as systemd would run it: credentials copied into $CREDENTIALS_DIRECTORY,
    # flag files in /etc/lifeline (here: temporary copies), Redis not contacted (a closed port).
    etc = tmp_path / "etc"
    etc.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    flags = _scale_out_flags(etc, f"redis://127.0.0.1:{closed}/0")
    (etc / "lifeline.flags").write_text((DEPLOY / "lifeline.flags").read_text())
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name, source in credentials.items():
        assert source.startswith("/etc/lifeline/")
        shutil.copy(etc / Path(source).name, creds / name)
    # Afterwards the flag file's own paths must not matter: point them somewhere unreadable.
    flags.write_text(re.sub(r"^(--redis-[a-z-]+-file=).*$", r"\1/nonexistent/secret", flags.read_text(), flags=re.M))
    command = _unit_lines(drop_in, "ExecStartPre")[1]
    command = command.replace("${CREDENTIALS_DIRECTORY}", str(creds)).replace("/etc/lifeline", str(etc))
    argv = shlex.split(command)
    assert argv[0] == "/usr/local/bin/lifeline" and "--check" in argv
    result = subprocess.run([lifeline_bin, *argv[1:]], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"--redis-key-secret-file={creds}/redis-key-secret" in result.stdout


def test_kubernetes_scale_out_manifest_runs_redis_flags_with_the_secret_mounted():
    try:
        import yaml
    except ImportError:
        pytest.fail("PyYAML missing (it comes with kubernetes-validate): run scripts/setup", pytrace=False)
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "lifeline-scale-out.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) >= {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"}, set(kinds)
    assert not any("redis" in (d.get("metadata", {}).get("name", "")) and d["kind"] in ("Deployment", "StatefulSet")
                   for d in docs), "no Redis server here: operators bring their own"

    deployment = kinds["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    (container,) = spec["containers"]
    args = container["args"]
    assert any(a.startswith("--redis=redis") for a in args), args
    secret_path = next(a.split("=", 1)[1] for a in args if a.startswith("--redis-key-secret-file="))
    password_path = next(a.split("=", 1)[1] for a in args if a.startswith("--redis-password-file="))
    assert "--instance-name=$(POD_NAME)" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    # The same image and base flags as lifeline.yaml.
    base = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "lifeline.yaml").read_text()) if d}
    (base_container,) = base["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == base_container["image"]
    assert all(a in args for a in base_container["args"]), (base_container["args"], args)
    assert kinds["ConfigMap"]["data"] == base["ConfigMap"]["data"]
    for probe in ("readinessProbe", "livenessProbe", "lifecycle"):
        assert container[probe] == base_container[probe], probe

    # The Secret's keys are files at exactly the paths the flags name, mounted read-only.
    secret = kinds["Secret"]
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    assert keys == {"redis-key-secret", "redis-password"}, keys
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounted = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        sources = volume.get("projected", {}).get("sources", [])
        if "secret" in volume:
            sources = [{"secret": volume["secret"]}]
        for source in sources:
            if source.get("secret", {}).get("secretName", source.get("secret", {}).get("name")) != secret["metadata"]["name"]:
                continue
            items = source["secret"].get("items") or [{"key": k, "path": k} for k in keys]
            for item in items:
                assert mount.get("readOnly") is True, f"{mount['mountPath']} is not read-only"
                mounted[item["key"]] = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
    assert mounted.get("redis-key-secret") == secret_path, (mounted, secret_path)
    assert mounted.get("redis-password") == password_path, (mounted, password_path)

    # Spread over nodes, and a budget that keeps two of the three during voluntary disruptions.
    spreads = spec["topologySpreadConstraints"]
    assert any(c["topologyKey"] == "kubernetes.io/hostname" for c in spreads), spreads
    pdb = kinds["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (pdb["spec"]["selector"]["matchLabels"], kinds["Service"]["spec"]["selector"],
                     *(c["labelSelector"]["matchLabels"] for c in spreads)):
        assert all(labels.get(k) == v for k, v in selector.items()), selector
