"""Files sent with an email, checked at enqueue into the form the `content` column stores.

`content_type` is a MIME type with optional parameters (`text/csv; charset=iso-8859-1`),
written back in one normal form. A text type without a charset gets `charset=utf-8` when its
content is UTF-8 (readers would guess otherwise, and show mojibake); text in another encoding
must name its charset. `multipart/*` and `message/*` are refused: RFC 2046 forbids the base64
encoding every file is sent in for them.

An attachment with a `content_id` is an inline part (RFC 2387 multipart/related, RFC 2392
`cid:` URLs): an image the HTML shows as `<img src="cid:logo@acme">`. It needs an HTML body.
"""

from __future__ import annotations

import base64
import codecs
import re
from collections.abc import Sequence
from typing import Any

from mailq.errors import InvalidEmail, quoted
from mailq.models import Attachment

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^({_TOKEN})/({_TOKEN})$")
_PARAMETER = re.compile(rf'^\s*({_TOKEN})\s*=\s*({_TOKEN}|"(?:[^"\\]|\\.)*")\s*$')
_TOKEN_ONLY = re.compile(rf"^{_TOKEN}$")
# A Content-ID is a msg-id without its brackets (RFC 2392): dot-atom [@ dot-atom].
_CONTENT_ID = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"(?:@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)?$"
)
MAX_CONTENT_ID_CHARS = 250
# A file name as file systems keep it (255), and files per email: a message is not an archive.
MAX_FILENAME_CHARS = 255
MAX_ATTACHMENTS = 100
_NOT_BASE64 = ("multipart", "message")


def check_attachments(attachments: Sequence[Attachment], *, html: bool) -> list[dict[str, Any]]:
    """The stored form of an email's files; InvalidEmail names the attachment and field."""
    stored: list[dict[str, Any]] = []
    content_ids: set[str] = set()
    if len(attachments) > MAX_ATTACHMENTS:
        raise InvalidEmail(f"attachments: at most {MAX_ATTACHMENTS} files per email")
    for i, attachment in enumerate(attachments):
        field = f"attachments[{i}]"
        name = attachment.filename
        if not isinstance(name, str) or not name:
            raise InvalidEmail(f"{field}.filename: required")
        if _CONTROL.search(name):
            raise InvalidEmail(
                f"{field}.filename: control characters (CR, LF, ...) are not allowed"
            )
        if len(name) > MAX_FILENAME_CHARS:
            raise InvalidEmail(f"{field}.filename: longer than {MAX_FILENAME_CHARS} characters")
        if not isinstance(attachment.content, bytes | bytearray):
            raise InvalidEmail(f"{field}.content: must be bytes")
        item: dict[str, Any] = {
            "filename": name,
            "content_type": content_type(field, attachment.content_type, attachment.content),
            "content_base64": base64.b64encode(attachment.content).decode("ascii"),
        }
        if attachment.content_id is not None:
            cid = _content_id(field, attachment.content_id, html=html)
            if cid.lower() in content_ids:
                raise InvalidEmail(f"{field}.content_id: {cid!r} is used twice in this email")
            content_ids.add(cid.lower())
            item["content_id"] = cid
        stored.append(item)
    return stored


def content_type(field: str, value: object, content: bytes) -> str:
    """`type/subtype; name=value...` in its normal form, with a charset for text."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEmail(f"{field}.content_type: required, a MIME type like text/plain")
    if not value.isascii() or _CONTROL.search(value):
        raise InvalidEmail(
            f"{field}.content_type: {quoted(value)} is not a MIME type like text/plain"
        )
    media, *raw_parameters = _split_parameters(value)
    match = _MEDIA_TYPE.match(media.strip())
    if match is None:
        raise InvalidEmail(
            f"{field}.content_type: {quoted(value)} is not a MIME type like text/plain"
        )
    main, sub = match.group(1).lower(), match.group(2).lower()
    if main in _NOT_BASE64:
        raise InvalidEmail(
            f"{field}.content_type: {main}/* cannot be an attachment (it may not be base64-"
            "encoded): send the file as application/octet-stream"
        )
    parameters: dict[str, str] = {}
    for raw in raw_parameters:
        parameter = _PARAMETER.match(raw)
        if parameter is None:
            raise InvalidEmail(
                f"{field}.content_type: {raw.strip()!r} is not a parameter like charset=utf-8"
            )
        key = parameter.group(1).lower()
        text = parameter.group(2)
        if text.startswith('"'):
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        if key in parameters:
            raise InvalidEmail(f"{field}.content_type: the parameter {key} is given twice")
        parameters[key] = text
    if main == "text":
        charset = parameters.get("charset")
        if charset is None:
            try:
                codecs.decode(content, "utf-8")
            except UnicodeDecodeError:
                raise InvalidEmail(
                    f"{field}.content_type: the file is not UTF-8: name its charset, e.g. "
                    f"{main}/{sub}; charset=iso-8859-1"
                ) from None
            parameters["charset"] = "utf-8"
        else:
            try:
                codecs.lookup(charset)
            except LookupError:
                raise InvalidEmail(f"{field}.content_type: unknown charset {charset!r}") from None
    written = "".join(f"; {k}={_quoted(v)}" for k, v in parameters.items())
    return f"{main}/{sub}{written}"


def _split_parameters(value: str) -> list[str]:
    """`value` split at the semicolons that are not inside a quoted string."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    if parts[-1].strip() == "" and len(parts) > 1:
        parts.pop()  # a trailing `;`
    return parts


def _quoted(value: str) -> str:
    if _TOKEN_ONLY.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _content_id(field: str, value: object, *, html: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEmail(f"{field}.content_id: must be a non-empty string like logo@acme")
    cid = value.strip()
    if cid.startswith("<") and cid.endswith(">"):
        cid = cid[1:-1]
    if len(cid) > MAX_CONTENT_ID_CHARS or not _CONTENT_ID.match(cid):
        raise InvalidEmail(
            f"{field}.content_id: {quoted(value)} is not a Content-ID like logo@acme (letters, "
            "digits, . _ - and one @)"
        )
    if not html:
        raise InvalidEmail(
            f"{field}.content_id: an inline part needs an html body that shows it "
            f'(<img src="cid:{cid}">)'
        )
    return cid
