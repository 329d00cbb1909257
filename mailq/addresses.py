"""Email addresses as people write them: a bare `addr@example.com` or a mailbox
`Display Name <addr@example.com>` (RFC 5322 §3.4; a quoted name may hold commas).

Syntax only, no DNS. The bare address is what mailq stores for matching (suppression, campaign
de-duplication, the views' `to_address`); the display name is kept apart. On the wire, domains
go as A-labels (IDNA) unless the message needs SMTPUTF8 anyway (a non-ASCII local part), and
names are RFC 2047-encoded by mailq.compose.mime.

Special-use names (RFC 6761): `*.test` and `*.example` are ordinary names here (§6.2: test
suites use them), `*.invalid` is refused, `localhost` and other single-label names are accepted
for internal relays; the other reserved names email-validator knows (`.local`, `.onion`,
`.arpa`, `*.localhost`) stay refused.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from mailq.caches import bytes_cache

MAX_NAME_CHARS = 256
# Any C0 control character or DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SINGLE_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# RFC 6761 §6.2: applications SHOULD treat test names as ordinary names.
ORDINARY_SPECIAL_USE = frozenset({"test"})
_RESERVED_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES) - ORDINARY_SPECIAL_USE
# The common case, checked without email-validator (which costs ~50 us an address and would
# dominate bulk enqueue): a dot-atom local part at a domain of letter-digit-hyphen labels with
# an alphabetic top-level label. Anything else goes to email-validator; both accept exactly
# the same plain addresses (tests/unit/test_addresses.py checks a sample against it).
_PLAIN_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63})\Z"
)
# Characters an ASCII display name may hold without quotes: RFC 5322 atext and spaces. Anything
# else (`,` `.` `;` `:` `@` `<` ...) is written in double quotes.
_ATOM_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+$")
_UNQUOTED_SPECIALS = re.compile(r'[()<>\[\]:;@\\,"]')


class AddressError(ValueError):
    """Why a value is not a mailbox (the caller puts the field name in front)."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A bare address and the display name given with it (None when there was none)."""

    address: str
    name: str | None = None

    def __str__(self) -> str:
        """The mailbox as written in RFC 5322 (UTF-8, not encoded): what mailq stores and
        reports, and what parse_mailbox reads back to the same Mailbox."""
        if not self.name:
            return self.address
        return f"{quote_name(self.name)} <{self.address}>"

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part: the address cannot be written in ASCII at all."""
        return not self.address.rpartition("@")[0].isascii()

    def envelope(self, *, utf8: bool) -> str:
        """The address for MAIL FROM / RCPT TO: the domain as A-labels unless `utf8`."""
        return self.address if utf8 else ascii_address(self.address)


def parse_mailbox(value: str) -> Mailbox:
    """A bare address or `Name <address>`; AddressError says what is wrong."""
    if is_plain_address(value):
        return Mailbox(value)
    if _CONTROL.search(value):
        raise AddressError("control characters are not allowed in an address")
    return _parse_slow(value)


# The address caches keep at most this much of what clients sent (keys counted in full): an
# entry count alone would keep 65,536 invalid addresses of megabytes each.
ADDRESS_CACHE_BYTES = 16 * 1024 * 1024
# RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so an address at most 254; a mailbox
# adds its display name (quoted or RFC 2047-encoded), <, > and spaces.
MAX_ADDRESS_CHARS = 254
MAX_MAILBOX_CHARS = 600


@bytes_cache(ADDRESS_CACHE_BYTES)
def _parse_slow(value: str) -> Mailbox:
    if len(value) > MAX_MAILBOX_CHARS:
        raise AddressError(f"longer than {MAX_MAILBOX_CHARS} characters")
    text = value.strip()
    if not text.endswith(">"):
        if "<" in text:
            raise AddressError("a '<' without its closing '>': write Name <address>")
        problem = address_problem(text)
        if problem:
            raise AddressError(problem)
        return Mailbox(text)
    name, address = _split_mailbox(text)
    problem = address_problem(address)
    if problem:
        raise AddressError(problem)
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise AddressError(f"the display name is longer than {MAX_NAME_CHARS} characters")
    return Mailbox(address, name or None)


def _split_mailbox(text: str) -> tuple[str | None, str]:
    """`phrase <addr-spec>` -> (the name, unquoted and decoded; the address)."""
    if text.startswith('"'):
        name, rest = _quoted_string(text)
        rest = rest.lstrip()
        if not rest.startswith("<"):
            raise AddressError("after a quoted display name comes <address>")
    else:
        head, bracket, rest = text.partition("<")
        rest = bracket + rest
        name = " ".join(head.split())
        special = _UNQUOTED_SPECIALS.search(name)
        if special:
            raise AddressError(
                f"a display name with {special.group(0)!r} must be in double quotes, "
                'like "Doe, Jane" <jane@example.com>'
            )
        if "=?" in name:
            name = _decode_encoded_words(name)
    address = rest[1:-1].strip()
    if "<" in address or ">" in address:
        raise AddressError("one <address> per mailbox")
    if not address:
        raise AddressError("the address between < and > is empty")
    return name, address


def _quoted_string(text: str) -> tuple[str, str]:
    """The content of the quoted-string `text` starts with, and what follows it."""
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(out).strip(), text[index + 1 :]
        out.append(char)
        index += 1
    raise AddressError("the display name's double quote is not closed")


def _decode_encoded_words(name: str) -> str:
    """A name given RFC 2047-encoded (`=?utf-8?q?J=C3=B6rg?=`) as the text it stands for."""
    from email.header import decode_header, make_header

    try:
        return " ".join(str(make_header(decode_header(name))).split())
    except (UnicodeDecodeError, LookupError, ValueError):
        raise AddressError("the display name has a malformed RFC 2047 encoded word") from None


def quote_name(name: str) -> str:
    """A display name as an RFC 5322 phrase: as it is when it is atoms (or non-ASCII text
    without specials), in double quotes otherwise."""
    if _ATOM_PHRASE.match(name) and name == " ".join(name.split()) and "=?" not in name:
        return name
    if not name.isascii() and not _UNQUOTED_SPECIALS.search(name) and "=?" not in name:
        return " ".join(name.split())
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def is_plain_address(address: str) -> bool:
    match = _PLAIN_ADDRESS.match(address)
    return (
        match is not None
        and len(address) <= 254
        and address.index("@") <= 64
        and match.group(1).lower() not in _RESERVED_TLDS
    )


def address_problem(address: str) -> str | None:
    """Why `address` (bare) is not a valid email address (syntax only), or None."""
    if is_plain_address(address):
        return None
    return _address_problem_slow(address)


@bytes_cache(ADDRESS_CACHE_BYTES)
def _address_problem_slow(address: str) -> str | None:
    if len(address) > MAX_ADDRESS_CHARS:
        return f"longer than {MAX_ADDRESS_CHARS} characters"
    # Single-label domains like `localhost` are accepted (internal relays and staging use
    # them) and `*.test` is an ordinary name (RFC 6761 §6.2); email-validator refuses both,
    # so such an address is checked with a stand-in domain of the same shape.
    local, _, domain = address.rpartition("@")
    if local and _SINGLE_LABEL.match(domain):
        address = f"{local}@example.com"
    elif local and domain.lower().rpartition(".")[2] in ORDINARY_SPECIAL_USE:
        address = f"{local}@{domain.rpartition('.')[0]}.example"
    try:
        validate_email(
            address, check_deliverability=False, allow_smtputf8=True, globally_deliverable=False
        )
    except EmailNotValidError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """A domain as A-labels (`bücher.de` -> `xn--bcher-kva.de`): what goes on the wire to a
    server without SMTPUTF8."""
    if domain.isascii():
        return domain
    import idna

    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:  # pragma: no cover - validation refused it already
        raise AddressError(f"the domain {domain!r} has no A-label form: {exc}") from None


def ascii_address(address: str) -> str:
    """`address` with its domain as A-labels (the local part as it is)."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


def message_id_domain(address: str) -> str:
    """The right-hand side of a Message-ID made for a sender: its domain, in ASCII."""
    domain = address.rpartition("@")[2] or "localhost"
    return ascii_domain(domain)


# A Message-ID's left-hand side: 32 hex digits, the clock (microseconds since the epoch, 13
# digits: until 2112) then 19 random ones (76 bits). Time first, so that the index bounces find
# sent emails by (emails_message_id_sent_btree) takes each batch of newly sent emails into a few
# adjacent pages, where random keys would dirty a page of their own each (and write it whole
# to the WAL after every checkpoint) once millions of emails were sent.
MESSAGE_ID_CLOCK_DIGITS = 13
MESSAGE_ID_RANDOM_DIGITS = 19


def _clock_hex() -> str:
    return f"{time.time_ns() // 1000:0{MESSAGE_ID_CLOCK_DIGITS}x}"


def new_message_id(domain: str) -> str:
    """A new Message-ID for a sender's domain (see message_id_domain)."""
    random = os.urandom(10).hex()[:MESSAGE_ID_RANDOM_DIGITS]
    return f"<{_clock_hex()}{random}@{domain}>"


def message_id_hexes(count: int) -> str:
    """The left-hand sides of `count` new Message-IDs, 32 hex digits each, one after another
    (one clock reading for all: a campaign's chunk)."""
    clock = _clock_hex()
    random = os.urandom(10 * count).hex()
    step = 2 * 10
    return "".join(
        clock + random[at : at + MESSAGE_ID_RANDOM_DIGITS] for at in range(0, step * count, step)
    )
