"""``vendhub certs generate``: a self-signed TLS certificate for a hub on a local network.

Browsers warn about a self-signed certificate until it is trusted; the point is that
passwords and tokens never cross the network in clear text. The certificate names the
host's name, ``localhost``, the loopback addresses and whatever ``--host`` adds.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_DIR = "certs"
CERT_FILE = "vendhub.crt"
KEY_FILE = "vendhub.key"


class CertificateExists(Exception):
    """The files exist already and ``force`` was not given."""


@dataclass(frozen=True, slots=True)
class GeneratedCertificate:
    certificate: Path
    key: Path
    names: tuple[str, ...]
    fingerprint_sha256: str
    not_after: datetime.datetime


def _alt_names(hosts: list[str]) -> tuple[list[x509.GeneralName], list[str]]:
    wanted = ["localhost", socket.gethostname(), "127.0.0.1", "::1", *hosts]
    names: list[x509.GeneralName] = []
    shown: list[str] = []
    for host in dict.fromkeys(h.strip() for h in wanted if h.strip()):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
        shown.append(host)
    return names, shown


def generate_certificate(
    config_dir: Path | str,
    *,
    hosts: list[str] | None = None,
    days: int = 3650,
    force: bool = False,
) -> GeneratedCertificate:
    """Write ``<config>/certs/vendhub.crt`` and ``vendhub.key`` (the key readable only by you)."""
    folder = Path(config_dir) / CERT_DIR
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if not force and (cert_path.exists() or key_path.exists()):
        raise CertificateExists(
            f"{cert_path} or {key_path} exists already; use --force to replace them"
        )
    if days < 1 or days > 36500:
        raise ValueError(f"--days must be from 1 to 36500, got {days}")
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names, shown = _alt_names(hosts or [])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, shown[1] or "vendhub")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    return GeneratedCertificate(
        cert_path, key_path, tuple(shown), fingerprint, certificate.not_valid_after_utc
    )
