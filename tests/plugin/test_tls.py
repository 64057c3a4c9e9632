"""TLS: ``--taskqueue-tls-ca`` makes the harness connect with TLS, trusting that CA."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_SCENARIO = """
import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.lifecycle, pytest.mark.required]

async def test_submit_over_tls(harness):
    answer = await harness.submit("noop")
    await harness.wait_for_terminal(answer.task_id)
"""


def _self_signed(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pytest-taskqueue test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls_with_the_right_ca(inner: pytest.Pytester, fake_server: Callable[..., str]) -> None:
    cert, key = _self_signed(inner.path)
    target = fake_server(f"--tls-cert={cert}", f"--tls-key={key}")
    inner.makepyfile(test_tls=_SCENARIO)
    result = inner.runpytest_subprocess(
        "test_tls.py", f"--taskqueue-target={target}", f"--taskqueue-tls-ca={cert}"
    )
    result.assert_outcomes(passed=1)


def test_plaintext_against_a_tls_server_is_an_infrastructure_error(
    inner: pytest.Pytester, fake_server: Callable[..., str]
) -> None:
    cert, key = _self_signed(inner.path)
    target = fake_server(f"--tls-cert={cert}", f"--tls-key={key}")
    inner.makepyfile(test_tls=_SCENARIO)
    result = inner.runpytest_subprocess(
        "test_tls.py", f"--taskqueue-target={target}", "--taskqueue-connect-timeout=1"
    )
    assert result.ret == 3
    result.stdout.fnmatch_lines([f"*taskqueue: target {target} is unreachable: *"])
