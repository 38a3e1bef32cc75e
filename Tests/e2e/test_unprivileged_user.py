"""Lifeline as the packages run it: as an ordinary user, without any capability.

lifeline.service runs it as the user lifeline, the Kubernetes manifest as uid 65532, the image
as 65532. The rest of the suite runs as whoever runs it, root in CI, which hid this: a socket
option set at the wrong level (SOL_SOCKET option 1, SO_DEBUG, instead of TCP_NODELAY) needs
CAP_NET_ADMIN, so as an ordinary user every accepted connection was closed at once and every
origin connection failed. Here the gateway and the demo origin run as `nobody` (with setpriv
when the suite runs as root).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request

import pytest

from conftest import read_event_ids


def _unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv missing (Debian package util-linux)", pytrace=False)
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]



@pytest.fixture
def unprivileged_gateway(processes, lifeline_bin):
    origin = processes.start("demo-origin", _unprivileged(
        [lifeline_bin, "demo-origin", "--listen=127.0.0.1:0", "--tick=100ms", "--drop-every=0"]))
    gateway = processes.start("lifeline", _unprivileged(
        [lifeline_bin, "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", f"--route=/={origin.url}"]))
    return origin, gateway, gateway.admin_url()


def test_admin_listener_and_demo_origin_answer_as_an_ordinary_user(unprivileged_gateway):
    origin, _, admin = unprivileged_gateway
    with urllib.request.urlopen(f"{admin}/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{origin.url}/events", timeout=5) as response:
        assert response.readline(), "the demo origin answers"


def test_gateway_serves_a_stream_as_an_ordinary_user(unprivileged_gateway):
    _, gateway, admin = unprivileged_gateway
    with urllib.request.urlopen(f"{gateway.url}/events", timeout=5) as response:
        ids = read_event_ids(response, 2)
        with urllib.request.urlopen(f"{admin}/metrics", timeout=5) as metrics:
            assert re.search(r"^lifeline_upstream_connected 1(\.0)?$", metrics.read().decode(), re.M)
