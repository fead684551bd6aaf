"""A real SMTP server on loopback (aiosmtpd) for the mail tests: plain, STARTTLS or implicit
TLS, with a login if asked, keeping every message it accepted, parsed."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port

USERNAME, PASSWORD = "litebase-smtp-user", "a-real-smtp-password"
# aiosmtpd counts only STARTTLS as TLS when it weighs AUTH, and warns when implicit TLS turns
# auth_require_tls off (below); the connection is encrypted all the same. Tests of implicit TLS
# ignore the warning with this mark.
IMPLICIT_TLS_WARNING = "ignore:Requiring AUTH while not requiring TLS:UserWarning"


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: Path  # the CA that signed the server's certificate (SMTP_CA_FILE)
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    # Answer the next mails with this (e.g. "451 4.3.0 try again later") instead of taking them.
    refuse_with: list[str] = field(default_factory=list)

    def settings(self, security: str) -> dict[str, str]:
        """The environment variables that make Litebase deliver here."""
        return {
            "MAIL_BACKEND": "smtp",
            "SMTP_HOST": self.host,
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": security,
            "SMTP_USERNAME": USERNAME,
            "SMTP_PASSWORD": PASSWORD,
            "SMTP_CA_FILE": str(self.ca_file),
            "SMTP_TIMEOUT_SECONDS": "10",
        }

    def wait_for(self, to: str, subject: str = "", timeout: float = 30) -> EmailMessage:
        """The first message to ``to`` whose subject holds ``subject``, once it has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.messages):
                if message["To"] == to and subject in message["Subject"]:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to} about {subject!r} within {timeout}s")


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        if self.server.refuse_with:
            return self.server.refuse_with.pop(0)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.server.messages.append(parsed)
        return "250 OK"


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1 and localhost: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Litebase test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "smtp-ca.pem", folder / "smtp-cert.pem", folder / "smtp-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@contextmanager
def smtp_server(
    folder: Path, security: Literal["starttls", "tls", "none"] = "starttls"
) -> Iterator[SmtpServer]:
    """An SMTP server on a free loopback port until the block ends. With TLS (STARTTLS
    required, or implicit) it also requires the login USERNAME / PASSWORD."""
    ca, cert, key = _certificates(folder)
    server = SmtpServer("127.0.0.1", free_port(), ca)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(
        smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USERNAME.encode(),
            PASSWORD.encode(),
        )
        if ok:
            server.logins.append(USERNAME)
        return AuthResult(success=ok)

    options: dict[str, Any] = {}
    if security == "starttls":
        options = {"tls_context": context, "require_starttls": True}
    elif security == "tls":
        # aiosmtpd only counts STARTTLS as TLS for AUTH; this connection is TLS from the start.
        options = {"ssl_context": context, "auth_require_tls": False}
    if security != "none":
        options |= {"authenticator": authenticate, "auth_required": True}
    controller = Controller(_Handler(server), hostname=server.host, port=server.port, **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
