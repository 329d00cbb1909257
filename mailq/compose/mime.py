"""A small, fast MIME writer for the messages mailq sends.

The standard library's `email.message.EmailMessage` costs about 0.75 ms a message here, which
alone would cap a worker near 1,300 emails/s. mailq's messages have a fixed shape (text, an
optional HTML alternative, optional attachments, plain address headers), so this module
writes them directly: headers folded and RFC 2047-encoded where needed, bodies in 7bit when
they can be, quoted-printable otherwise, attachments in base64. Output lines end in CRLF.
The tests parse every shape back with the standard library to check it.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from email.header import Header

CRLF = "\r\n"
MAX_LINE = 76
_SEVEN_BIT_LINE = 998


def header(name: str, value: str, *, utf8: bool = False) -> str:
    """One header line (folded). Non-ASCII is RFC 2047 encoded unless `utf8` (SMTPUTF8)."""
    if value.isascii() or utf8:
        return _fold(f"{name}: {value}")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}"


def _fold(line: str) -> str:
    if len(line) <= 78:
        return line
    parts: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > 78:
            parts.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    parts.append(current)
    return CRLF.join(parts)


def _text_part(body: str, subtype: str) -> str:
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if body.isascii() and max(map(len, lines)) <= _SEVEN_BIT_LINE:
        encoding, payload = "7bit", CRLF.join(lines)
    else:
        raw = "\n".join(lines).encode("utf-8")
        qp = binascii.b2a_qp(raw, istext=True).decode("ascii")
        encoding, payload = "quoted-printable", qp.replace("\n", CRLF)
    head = (
        f"Content-Type: text/{subtype}; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: {encoding}{CRLF}"
    )
    return f"{head}{CRLF}{payload}"


def _attachment_part(
    filename: str, content_type: str, content: bytes, content_id: str | None = None
) -> str:
    kind = "attachment" if content_id is None else "inline"
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        disposition = f'{kind}; filename="{filename}"'
    else:
        from urllib.parse import quote

        disposition = f"{kind}; filename*=utf-8''{quote(filename, safe='')}"
    encoded = base64.b64encode(content).decode("ascii")
    lines = CRLF.join(encoded[i : i + MAX_LINE] for i in range(0, len(encoded), MAX_LINE))
    cid = "" if content_id is None else f"Content-ID: <{content_id}>{CRLF}"
    return (
        f"Content-Type: {content_type}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}"
        f"{_fold('Content-Disposition: ' + disposition)}{CRLF}{cid}{CRLF}{lines}"
    )


def _multipart(subtype: str, parts: Sequence[str]) -> str:
    boundary = f"=_mailq_{uuid.uuid4().hex}"
    # The CRLF before each delimiter belongs to the delimiter, not to the part before it.
    body = "".join(f"--{boundary}{CRLF}{part}{CRLF}" for part in parts)
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"{CRLF}{CRLF}'
        f"{body}--{boundary}--{CRLF}"
    )


Attachment = tuple[str, str, bytes] | tuple[str, str, bytes, str | None]


def body(
    text: str,
    html: str | None,
    attachments: Sequence[Attachment] = (),
) -> str:
    """The MIME body (with its Content-* headers) for text, an HTML alternative and files.
    A file with a content id (a 4th item) is inline: it goes with the text and HTML in a
    multipart/related part, which the HTML names as `cid:<content id>` (RFC 2387)."""
    content = _text_part(text, "plain")
    if html is not None:
        content = _multipart("alternative", [content, _text_part(html, "html")])
    inline = [_attachment_part(*a) for a in attachments if len(a) == 4 and a[3] is not None]
    files = [_attachment_part(*a[:3]) for a in attachments if len(a) == 3 or a[3] is None]
    if inline:
        content = _multipart("related", [content, *inline])
    if files:
        content = _multipart("mixed", [content, *files])
    return content


def message(headers: Sequence[tuple[str, str]], mime_body: str, *, utf8: bool = False) -> bytes:
    lines = [header(name, value, utf8=utf8) for name, value in headers]
    text = CRLF.join(lines) + CRLF + "MIME-Version: 1.0" + CRLF + mime_body
    return text.encode("utf-8")
