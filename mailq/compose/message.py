"""Builds the MIME message of a claimed email, rendering its templates."""

from __future__ import annotations

import base64
import codecs
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from mailq.addresses import AddressError, Mailbox, ascii_address, ascii_domain, parse_mailbox
from mailq.compose import mime
from mailq.compose.templates import render
from mailq.errors import PermanentFailure
from mailq.models import ClaimedEmail

if TYPE_CHECKING:
    from mailq.compose.unsubscribe import UnsubscribeLinks

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DEFAULT_FEEDBACK_SENDER_ID = "mailq"


# Headers that MessageParts carries as fields of their own rather than in `headers`.
_FIELD_HEADERS = frozenset({"from", "to", "cc", "reply-to", "subject", "message-id", "date"})


@dataclass(frozen=True, slots=True)
class AttachmentPart:
    filename: str
    content_type: str
    content: bytes
    # Set for an inline part, which the HTML names as `cid:<content_id>`.
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class MessageParts:
    """What the MIME was written from, for backends that take an email field by field (the
    JSON APIs of ESPs). Parsing the MIME back would cost more than building it (the stdlib
    parser, ~0.75 ms) and could not tell bcc from cc. The values are as rendered and as
    addressed (after redirect_all_to)."""

    kind: str
    from_header: str
    to: str
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    text: str
    html: str | None
    # Every header besides From, To, Cc, Reply-To, Subject, Message-ID and Date, in order.
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[AttachmentPart, ...]


# Not frozen (one per send; see mailq.models.ClaimedEmail), hashable by value as before.
@dataclass(slots=True, unsafe_hash=True)
class OutgoingMessage:
    """What a sender needs: the message as bytes and its envelope (and, when built by
    build_message, the parts it was written from: `parts`)."""

    email_id: int
    message_id: str
    mail_from: str
    to: str
    other_recipients: tuple[str, ...]
    data: bytes
    # The parts, or what makes them on first use: only the backends that take an email
    # field by field read them, so an SMTP or null send does not pay for them.
    parts_of: MessageParts | Callable[[], MessageParts] | None = field(
        default=None, repr=False, compare=False
    )
    # Written as an SMTPUTF8 message (RFC 6532): an address has a non-ASCII local part.
    utf8: bool = False

    @property
    def parts(self) -> MessageParts | None:
        parts = self.parts_of
        if callable(parts):
            parts = parts()
            self.parts_of = parts  # made once; the message stays as is
        return parts

    @property
    def needs_smtputf8(self) -> bool:
        return self.utf8 or not all(
            a.isascii() for a in (self.mail_from, self.to, *self.other_recipients)
        )


def build_message(
    email: ClaimedEmail,
    redirect_all_to: str | None = None,
    *,
    unsubscribe: UnsubscribeLinks | None = None,
    list_unsubscribe: bool = False,
    feedback_sender_id: str = DEFAULT_FEEDBACK_SENDER_ID,
) -> OutgoingMessage:
    """Render the templates and write the message; a rendering failure raises
    PermanentFailure, so no half-empty message is ever sent.

    Templates get `unsubscribe_url` on top of the email's context. With `list_unsubscribe`
    (campaign kinds) the message carries List-Unsubscribe (and List-Unsubscribe-Post for
    an https URL) unless the email set its own. A campaign's emails carry List-Id (RFC 2919)
    and Feedback-ID (`campaign:kind:feedback_sender_id`, the key of Gmail's feedback loop).
    `redirect_all_to` (staging) delivers to that address alone and keeps the real
    recipients in X-Mailq-Original-To.

    Mailboxes go on the wire with their display names RFC 2047-encoded and their domains as
    A-labels; only when an address has a non-ASCII local part is the message written as
    UTF-8 (SMTPUTF8, which the sender then requires of the server). The envelope carries
    the bare addresses."""
    content = email.content
    context = _context(email, unsubscribe)
    addressed = _addressing(email, redirect_all_to)
    headers = addressed.headers
    subject = render(content["subject"], context, html=False)
    if _CONTROL.search(subject):
        raise PermanentFailure("subject: the rendered subject has a line break or control char")
    headers.append(("Subject", subject))
    headers.append(("Message-ID", email.message_id))
    headers.append(("Date", _date(int(time.time()))))
    headers.extend(
        _further_headers(email, addressed, unsubscribe, list_unsubscribe, feedback_sender_id)
    )
    html = content.get("html")
    html_body = render(html, context, html=True) if html else None
    # Every HTML email carries a text alternative, derived from the HTML when none is given.
    text = content.get("text")
    text_body = render(text, context, html=False) if text else _text_from_html(html_body or "")
    files = [_file(a) for a in content.get("attachments") or ()]
    data = mime.message(headers, mime.body(text_body, html_body, files), utf8=addressed.utf8)
    bodies = (text_body, html_body)
    return OutgoingMessage(
        email_id=email.id,
        message_id=email.message_id,
        mail_from=addressed.mail_from,
        to=addressed.to,
        other_recipients=addressed.others,
        data=data,
        parts_of=lambda: _parts(email, addressed.to, headers, subject, bodies, files),
        utf8=addressed.utf8,
    )


def _context(email: ClaimedEmail, unsubscribe: UnsubscribeLinks | None) -> Mapping[str, Any]:
    """What the templates are rendered with: the email's context, and `unsubscribe_url`."""
    content = email.content
    context: Mapping[str, Any] = content.get("context") or {}
    if "unsubscribe_url" not in context and _uses_unsubscribe_url(content):
        # Signed per recipient (an HMAC): made only when a template can read it.
        url = "" if unsubscribe is None else unsubscribe.url(email.to)
        context = {**context, "unsubscribe_url": url}
    return context


class _Addressed(NamedTuple):
    """The address headers of a message and its envelope."""

    headers: list[tuple[str, str]]  # From, To (and Cc, Reply-To, X-Mailq-Original-To)
    utf8: bool  # whether the message needs SMTPUTF8
    mail_from: str  # the envelope sender
    to: str  # the envelope recipient
    others: tuple[str, ...]  # the other envelope recipients (cc, bcc)
    sender: str  # the bare address of From


def _addressing(email: ClaimedEmail, redirect_all_to: str | None) -> _Addressed:
    """Who the message is from and to, as headers and as its envelope."""
    content = email.content
    sender_text: str = content["from"]
    if (
        email.to_name is None
        and email.to.isascii()
        and sender_text.isascii()
        and not (redirect_all_to or content.get("cc") or content.get("bcc"))
        and not content.get("reply_to")
    ):
        # The common case, one bare ASCII recipient: no mailbox to parse or encode.
        from_line, mail_from, sender_address = _ascii_sender(sender_text)
        headers = [("", from_line), ("To", email.to)]
        return _Addressed(headers, False, mail_from, email.to, (), sender_address)
    return _with_mailboxes(email, redirect_all_to)


def _further_headers(
    email: ClaimedEmail,
    addressed: _Addressed,
    unsubscribe: UnsubscribeLinks | None,
    list_unsubscribe: bool,
    feedback_sender_id: str,
) -> list[tuple[str, str]]:
    """The headers after Date: List-Unsubscribe, a campaign's List-Id and Feedback-ID (each
    unless the email set its own), then the email's own headers."""
    content = email.content
    own = content.get("headers") or {}
    own_names = {name.lower() for name in own}
    headers: list[tuple[str, str]] = []
    if list_unsubscribe and unsubscribe is not None and "list-unsubscribe" not in own_names:
        headers.extend(unsubscribe.headers(email.to, ascii_address(addressed.sender)))
    if email.campaign_id is not None:
        headers.extend(
            _campaign_headers(
                email, content, addressed.sender, feedback_sender_id, own_names, addressed.utf8
            )
        )
    headers.extend(own.items())
    return headers


def _parts(
    email: ClaimedEmail,
    to: str,
    headers: Sequence[tuple[str, str]],
    subject: str,
    bodies: tuple[str, str | None],
    files: Sequence[mime.File],
) -> MessageParts:
    """What the message was written from, for the backends that take it field by field."""
    content = email.content
    return MessageParts(
        kind=email.kind,
        from_header=content["from"],
        to=to,
        cc=tuple(content.get("cc") or ()),
        bcc=tuple(content.get("bcc") or ()),
        reply_to=tuple(content.get("reply_to") or ()),
        subject=subject,
        text=bodies[0],
        html=bodies[1],
        headers=tuple(h for h in headers if h[0] and h[0].lower() not in _FIELD_HEADERS),
        attachments=tuple(
            AttachmentPart(f.filename, f.content_type, f.content, f.content_id) for f in files
        ),
    )


@lru_cache(maxsize=256)
def _ascii_sender(sender: str) -> tuple[str, str, str]:
    """The From line, the envelope sender and the bare address of an ASCII From (the same for
    most emails: written once)."""
    mailbox = _mailbox("from", sender)
    return mime.address_header("From", [mailbox]), mailbox.envelope(utf8=False), mailbox.address


def _with_mailboxes(email: ClaimedEmail, redirect_all_to: str | None) -> _Addressed:
    """The addressing of an email with display names, several recipients or non-ASCII
    addresses (or redirected)."""
    content = email.content
    sender = _mailbox("from", content["from"])
    to = Mailbox(email.to, email.to_name)
    cc = [_mailbox("cc", a) for a in content.get("cc") or ()]
    bcc = [_mailbox("bcc", a) for a in content.get("bcc") or ()]
    reply_to = [_mailbox("reply_to", a) for a in content.get("reply_to") or ()]
    original: list[Mailbox] = []
    if redirect_all_to:
        # Staging: the real recipients are kept for inspection, never written to.
        original = [to, *cc, *bcc]
        to, cc, bcc = _mailbox("MAILQ_REDIRECT_ALL_TO", redirect_all_to), [], []
    utf8 = any(m.needs_smtputf8 for m in (sender, to, *cc, *bcc, *reply_to, *original))
    headers: list[tuple[str, str]] = [("", mime.address_header("From", [sender], utf8=utf8))]
    if original:
        headers.append(("X-Mailq-Original-To", ", ".join(str(m) for m in original)))
    headers.append(("", mime.address_header("To", [to], utf8=utf8)))
    if cc:
        headers.append(("", mime.address_header("Cc", cc, utf8=utf8)))
    if reply_to:
        headers.append(("", mime.address_header("Reply-To", reply_to, utf8=utf8)))
    others = tuple(m.envelope(utf8=utf8) for m in (*cc, *bcc))
    mail_from, to_address = sender.envelope(utf8=utf8), to.envelope(utf8=utf8)
    return _Addressed(headers, utf8, mail_from, to_address, others, sender.address)


def _mailbox(field: str, value: str) -> Mailbox:
    try:
        return parse_mailbox(value)
    except AddressError as exc:
        raise PermanentFailure(f"{field}: {value!r} is not a valid mailbox ({exc})") from None


def _campaign_headers(
    email: ClaimedEmail,
    content: Mapping[str, Any],
    sender: str,
    feedback_sender_id: str,
    own: set[str],
    utf8: bool,
) -> Sequence[tuple[str, str]]:
    """List-Id `"Campaign name" <id.kind.from-domain>` (RFC 2919) and Feedback-ID
    `id:kind:sender_id` (Gmail's feedback loop), unless the email set its own."""
    headers: list[tuple[str, str]] = []
    if "list-id" not in own:
        domain = sender.rpartition("@")[2]
        domain = "localhost" if domain.startswith("[") else ascii_domain(domain).lower()
        list_id = f"<{email.campaign_id}.{email.kind}.{domain}>"
        name = content.get("campaign_name")
        if name:
            list_id = f"{mime.phrase(name, utf8=utf8)} {list_id}"
        headers.append(("", mime.header("List-Id", list_id, utf8=True)))
    if "feedback-id" not in own:
        headers.append(("Feedback-ID", f"{email.campaign_id}:{email.kind}:{feedback_sender_id}"))
    return headers


def _file(attachment: Mapping[str, Any]) -> mime.File:
    content = base64.b64decode(attachment["content_base64"])
    content_type = attachment["content_type"]
    if content_type.lower().startswith("text/") and "charset=" not in content_type.lower():
        # Queued before charsets were added at enqueue: UTF-8 when it decodes as UTF-8.
        try:
            codecs.decode(content, "utf-8")
            content_type = f"{content_type}; charset=utf-8"
        except UnicodeDecodeError:
            pass
    return mime.File(attachment["filename"], content_type, content, attachment.get("content_id"))


def _uses_unsubscribe_url(content: Mapping[str, Any]) -> bool:
    """Whether a template may read `unsubscribe_url`: templates are rendered from strings
    (no includes), so one that does not spell the name cannot reach the variable."""
    return any(
        "unsubscribe_url" in source
        for source in (content.get("subject"), content.get("text"), content.get("html"))
        if source
    )


@lru_cache(maxsize=2)
def _date(second: int) -> str:
    """The Date header for a second (it has no finer part), in UTC written `+0000` (RFC 5322
    §3.3; `GMT` is obsolete syntax): written once a second rather than once a message."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _text_from_html(html: str) -> str:
    """A plain-text alternative for an HTML-only email (every HTML email carries one)."""
    from html.parser import HTMLParser

    class _Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self._skip = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in {"script", "style"}:
                self._skip += 1
            elif tag in {"br", "p", "div", "li", "tr", "h1", "h2", "h3"}:
                self.parts.append("\n")

        def handle_endtag(self, tag: str) -> None:
            if tag in {"script", "style"} and self._skip:
                self._skip -= 1

        def handle_data(self, data: str) -> None:
            if not self._skip:
                self.parts.append(data)

    parser = _Text()
    parser.feed(html)
    lines = (line.strip() for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line) + "\n"
