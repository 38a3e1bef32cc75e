"""Throwaway TLS material for the end-to-end tests, made at test time with the `openssl` CLI.

Nothing here is committed: each call writes a fresh CA and a server certificate for 127.0.0.1 and
localhost into a temporary directory, valid for two days.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


@dataclass(frozen=True)
class TestCerts:
    __test__ = False  # not a pytest test class

    ca: Path          # the CA certificate (PEM), for clients that want to trust it
    cert: Path        # server certificate followed by the CA (PEM chain), for --tls-cert
    key: Path         # server private key (PEM, unencrypted), for --tls-key


def make_test_certs(directory: Path) -> TestCerts:
    """Writes ca.pem, ca.key, server.pem (chain) and server.key into `directory` and returns their paths."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the `openssl` command is missing (Debian package `openssl`); the TLS tests need it "
                    "to make a throwaway certificate", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, leaf, chain = directory / "server.key", directory / "server.csr", directory / "leaf.pem", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(_SERVER_EXT)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=Lifeline e2e throwaway CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", leaf, "-days", "2", "-sha256", "-extfile", ext],
    ]
    for argv in steps:
        argv = [str(a) for a in argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.fail(f"making the test certificate failed: {' '.join(argv)}\n{done.stderr}", pytrace=False)
    chain.write_text(leaf.read_text() + ca.read_text())
    return TestCerts(ca=ca, cert=chain, key=key)
