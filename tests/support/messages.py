"""Checks on produced messages: a strict parse that fails on any defect, display names decoded
the way receivers decode them, and DKIM keys with their DNS record for dkimpy."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from email import errors, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path
from typing import Any

import dkim


def strict_parse(data: bytes) -> EmailMessage:
    """The message parsed with `email.policy.strict` (a defect found while parsing raises),
    with every header of every part read and checked for defects too.

    A message that is not ASCII must be an SMTPUTF8 one (RFC 6532: UTF-8 headers): it is
    parsed as UTF-8 text, and the one defect the standard library reports for every
    non-ASCII local part (it predates RFC 6532) is allowed in it."""
    assert data.endswith(b"\r\n"), "the message does not end in CRLF"
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF in the message"
    utf8 = not data.isascii()
    if utf8:
        message: Any = Parser(policy=policy.strict).parsestr(data.decode("utf-8"))
    else:
        message = BytesParser(policy=policy.strict).parsebytes(data)
    for part in message.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
        for name, value in part.items():
            defects = [
                d
                for d in getattr(value, "defects", ())
                if not (utf8 and isinstance(d, errors.NonASCIILocalPartDefect))
            ]
            assert not defects, (name, defects)
    return message  # type: ignore[no-any-return]


def header_text(data: bytes, name: str) -> str:
    """A header's value decoded as an RFC 2047 reader does (the standard library's new
    parser puts a space between adjacent encoded words, which RFC 2047 §6.2 says to drop)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t")
    prefix = name.lower() + ":"
    for line in unfolded.split("\r\n"):
        if line.lower().startswith(prefix):
            return str(make_header(decode_header(line[len(prefix) :].strip())))
    raise AssertionError(f"no {name} header")


@dataclass(frozen=True)
class DkimKeys:
    private: bytes
    public: bytes
    domain: str = "example.com"
    selector: str = "mail"

    def dns(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's DNS lookup, answering for this key's selector only."""
        assert name == f"{self.selector}._domainkey.{self.domain}.".encode(), name
        key = b"".join(line for line in self.public.splitlines() if b"-----" not in line)
        return b"v=DKIM1; k=rsa; p=" + key

    def verifies(self, data: bytes) -> bool:
        return bool(dkim.verify(data, dnsfunc=self.dns))


def make_dkim_keys(folder: Path) -> DkimKeys:
    private, public = folder / "key.pem", folder / "pub.pem"
    subprocess.run(["openssl", "genrsa", "-out", private, "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", private, "-pubout", "-out", public],
        check=True,
        capture_output=True,
    )
    return DkimKeys(private.read_bytes(), public.read_bytes())
