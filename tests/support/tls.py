"""Certificates made by the test: a throwaway CA and a server certificate for one host name."""

from __future__ import annotations

import datetime
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class LocalTls:
    """A server context whose certificate names one host, and a client context trusting its CA."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, *, issuer: x509.Name | None, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_tls(host: str) -> LocalTls:
    """A fresh CA and a certificate it signed for host."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("videogen test CA", ca_key, issuer=None, signer=ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(host, key, issuer=ca.subject, signer=ca_key)
    with tempfile.TemporaryDirectory() as directory:
        chain, private = Path(directory) / "chain.pem", Path(directory) / "key.pem"
        chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(chain, private)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return LocalTls(server=server, client=client)
