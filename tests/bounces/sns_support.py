"""A stand-in for Amazon SNS in the tests: a signing certificate made with `cryptography`, a
real HTTPS server on loopback that serves it (and answers SubscribeURL), and a signer that
builds SNS messages the way SNS does (signature versions 1 and 2).

The canonical string is built here independently of mailq.bounces.webhooks.ses, after
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html, so that a
mistake in mailq's version fails the tests instead of agreeing with itself.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"


def make_certificate(
    common_name: str,
    *,
    ip: str | None = None,
    not_before: datetime | None = None,
    days: int = 1,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return key, builder.sign(key, hashes.SHA256())


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class SnsServer:
    """The loopback HTTPS server. `requests` lists the paths it was asked for."""

    port: int
    tls_context: ssl.SSLContext  # a client context that trusts the server's certificate
    files: dict[str, bytes]
    requests: list[str] = field(default_factory=list)

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"https://{self.netloc}{path}"


def serve(files: dict[str, bytes]) -> Iterator[SnsServer]:
    """Run the HTTPS server until the generator is closed."""
    tls_key, tls_cert = make_certificate("127.0.0.1", ip="127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "tls.pem", Path(tmp) / "tls.key"
        cert_file.write_bytes(pem(tls_cert))
        key_file.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert_file, key_file)
        client_context = ssl.create_default_context(cafile=str(cert_file))

    state: dict[str, SnsServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sns = state["server"]
            sns.requests.append(self.path)
            body = sns.files.get(self.path.partition("?")[0])
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    sns = SnsServer(port=httpd.server_address[1], tls_context=client_context, files=files)
    state["server"] = sns
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield sns
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def canonical(message: dict[str, Any]) -> bytes:
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    lines = ""
    for name in names:
        if name in message:
            lines += f"{name}\n{message[name]}\n"
    return lines.encode()


@dataclass
class SnsSigner:
    key: rsa.RSAPrivateKey
    cert_url: str

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # SNS version 1 is SHA1
        signature = self.key.sign(canonical(message), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": self.cert_url,
        }

    def notification(
        self,
        payload: dict[str, Any] | str,
        *,
        topic: str = TOPIC,
        timestamp: datetime | None = None,
        version: str = "1",
        subject: str | None = None,
        message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    ) -> bytes:
        message: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic,
            "Message": payload if isinstance(payload, str) else json.dumps(payload),
            "Timestamp": _iso(timestamp or datetime.now(UTC)),
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }
        if subject is not None:
            message["Subject"] = subject
        return json.dumps(self.sign(message, version)).encode()

    def confirmation(
        self,
        subscribe_url: str,
        *,
        kind: str = "SubscriptionConfirmation",
        topic: str = TOPIC,
        version: str = "1",
    ) -> bytes:
        message = {
            "Type": kind,
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a",
            "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.",
            "SubscribeURL": subscribe_url,
            "Timestamp": _iso(datetime.now(UTC)),
        }
        return json.dumps(self.sign(message, version)).encode()


def _iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
