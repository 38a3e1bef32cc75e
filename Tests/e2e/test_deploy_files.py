"""deploy/: the systemd units and the Kubernetes manifests are valid and fit the drain window."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


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


def test_kubernetes_manifests_validate_and_outlast_the_drain():
    validate = shutil.which("kubernetes-validate")
    if validate is None:
        pytest.fail("kubernetes-validate missing: run scripts/setup (PyPI kubernetes-validate)", pytrace=False)
    manifest = DEPLOY / "kubernetes" / "lifeline.yaml"
    result = subprocess.run([validate, "--strict", str(manifest)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    text = manifest.read_text()
    grace = float(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))
    pause = float(re.search(r'command: \["/bin/sleep", "(\d+)"\]', text).group(1))
    window = _drain_window_seconds(text)
    assert grace > pause + window + 2, f"grace {grace} s < preStop {pause} s + drain window {window} s"
    assert re.search(r"readinessProbe:\s+httpGet:\s+path: /readyz", text)
    assert re.search(r"livenessProbe:\s+httpGet:\s+path: /healthz", text)
