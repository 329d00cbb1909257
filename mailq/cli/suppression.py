"""The monitor's suppression commands: `mailq suppress ADDRESS… [--reason R]`,
`mailq suppress --import FILE`, `mailq unsuppress ADDRESS…` and `mailq suppressions`.

Every address is checked before anything is written: one bad address is one line on stderr,
exit 2, and the list is left as it was (all or nothing; an import is one transaction)."""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from mailq import suppression
from mailq.cli import display
from mailq.cli.options import add_command, connect, counted, existing_file, plural
from mailq.errors import InvalidEmail, UsageError

OPERATOR_REASON = "suppressed by an operator"
IMPORT_REASON = "imported"
LIST_LIMIT = 100
_ADDRESS_COLUMNS = ("email", "emailaddress", "address", "mail")


def addresses(raw: list[str]) -> list[str]:
    """The stored form of each address an operator typed; UsageError for the first bad one."""
    checked = []
    for value in raw:
        try:
            checked.append(suppression.normalise(value))
        except InvalidEmail as exc:
            problem = _why(exc)
            raise UsageError(
                problem if repr(value) in problem else f"{value!r}: {problem}"
            ) from None
    return checked


def _why(exc: InvalidEmail) -> str:
    """The problem without the field name check_address puts first."""
    text = str(exc)
    _, _, rest = text.partition(": ")
    return rest or text


# -- suppress ------------------------------------------------------------------------------


async def cmd_suppress(args: argparse.Namespace) -> int:
    if args.import_file and args.addresses:
        raise UsageError("suppress: give addresses, or --import FILE, not both")
    if args.import_file:
        return await _import(args)
    if not args.addresses:
        raise UsageError("suppress: give one or more addresses, or --import FILE")
    stored = addresses(args.addresses)
    reason = args.reason or OPERATOR_REASON
    async with connect(args) as pool:
        before = await suppression.find_suppressions(pool, stored)
        result = await suppression.suppress(pool, stored, reason)
        after = await suppression.find_suppressions(pool, stored)
    rows = [
        {
            "address": address,
            "added": address not in before,
            "reason": after[address].reason if address in after else reason,
            "suppressed_at": after[address].created_at if address in after else None,
        }
        for address in sorted(set(stored))
    ]
    if args.json:
        report = {"added": result.added, "cancelled": result.cancelled, "addresses": rows}
        display.print_json(report)
        return 0
    out = display.console()
    out.print(
        display.table(
            f"Suppressed: {plural(result.added, 'new address', 'new addresses')}, "
            f"{len(rows) - result.added} already on the list",
            ["address", "", "reason", "since"],
            [
                [
                    r["address"],
                    "added" if r["added"] else "already",
                    r["reason"],
                    r["suppressed_at"],
                ]
                for r in rows
            ],
        )
    )
    out.print(
        f"cancelled {plural(result.cancelled, 'email')} to them that had not gone out"
        if result.cancelled
        else "no email to them was waiting"
    )
    return 0


async def _import(args: argparse.Namespace) -> int:
    reason = args.reason or IMPORT_REASON
    name = args.import_file
    if name == "-":
        stream: TextIO = sys.stdin
        total = None
    else:
        path = existing_file(name, "--import")
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--import: cannot read {path}: {exc}") from None
        stream = io.StringIO(text, newline=None)
        lines = [line for line in text.splitlines() if line.strip()]
        total = len(lines) - (1 if lines and _address_column(lines[0]) else 0)
    entries = read_entries(stream, name, reason)
    async with connect(args) as pool, pool.acquire() as conn:
        with display.progress(f"importing suppressions from {name}", total) as tracker:
            result = await suppression.import_suppressions(conn, counted(entries, tracker), reason)
            read = tracker.done
    if args.json:
        display.print_json(
            {"read": read, "added": result.added, "cancelled": result.cancelled, "file": name}
        )
    else:
        print(
            f"imported {name}: {plural(read, 'address', 'addresses')} read, "
            f"{result.added} new on the list, "
            f"{plural(result.cancelled, 'email')} to them cancelled"
        )
    return 0


def read_entries(stream: TextIO, name: str, reason: str) -> Iterator[tuple[str, str]]:
    """(address, reason) from a file of one address per line (blank lines and # comments
    skipped), or a CSV whose header names a column `email` or `address` (and optionally
    `reason`). A bad address is a UsageError naming the file and line."""
    first = stream.readline()
    header = _header(first)
    column = _address_column(first)
    lines = _lines(first, stream) if column is None else _csv_rows(stream, header, column)
    for number, address, why in lines:
        try:
            yield suppression.normalise(address), why or reason
        except InvalidEmail as exc:
            raise UsageError(f"{name} line {number}: {_why(exc)}") from None


def _header(line: str) -> list[str]:
    return [cell.strip().lower() for cell in next(csv.reader([line]), [])]


def _address_column(line: str) -> str | None:
    """The address column when `line` is a CSV header, else None: a column named `email` or
    `address`, however spelt (`Email Address`, `e-mail`, `EMAIL_ADDRESS`)."""
    if "@" in line:
        return None
    header = _header(line)
    squeezed = {re.sub(r"[^a-z]", "", cell): cell for cell in header}
    for name in _ADDRESS_COLUMNS:
        if name in squeezed:
            return squeezed[name]
    return next((cell for cell in header if "email" in cell or "address" in cell), None)


def _lines(first: str, stream: TextIO) -> Iterator[tuple[int, str, str]]:
    for number, line in enumerate([first, *stream], start=1):
        value = line.strip()
        if value and not value.startswith("#"):
            yield number, value, ""


def _csv_rows(stream: TextIO, header: list[str], column: str) -> Iterator[tuple[int, str, str]]:
    where, why = header.index(column), header.index("reason") if "reason" in header else None
    for number, row in enumerate(csv.reader(stream), start=2):
        if not any(cell.strip() for cell in row):
            continue
        address = row[where] if where < len(row) else ""
        reason = row[why].strip() if why is not None and why < len(row) else ""
        yield number, address, reason


# -- unsuppress ----------------------------------------------------------------------------


async def cmd_unsuppress(args: argparse.Namespace) -> int:
    stored = addresses(args.addresses)
    async with connect(args) as pool:
        before = await suppression.find_suppressions(pool, stored)
        removed = await suppression.unsuppress(pool, stored)
    rows = [
        {
            "address": address,
            "removed": address in before,
            "reason": before[address].reason if address in before else None,
        }
        for address in sorted(set(stored))
    ]
    if args.json:
        display.print_json({"removed": removed, "addresses": rows})
        return 0
    out = display.console()
    out.print(
        display.table(
            f"Taken off the suppression list: {removed} of {len(rows)}",
            ["address", "", "was suppressed for"],
            [
                [r["address"], "removed" if r["removed"] else "was not on the list", r["reason"]]
                for r in rows
            ],
        )
    )
    if removed:
        out.print("emails cancelled while they were suppressed stay cancelled (`mailq retry ID`)")
    return 0


# -- suppressions --------------------------------------------------------------------------


async def cmd_suppressions(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= suppression.LIST_LIMIT_MAX:
        raise UsageError(f"--limit: must be from 1 to {suppression.LIST_LIMIT_MAX}")
    after = addresses([args.after])[0] if args.after else None
    async with connect(args) as pool:
        rows = await suppression.list_suppressions(pool, after=after, limit=args.limit)
    more = rows[-1].address if len(rows) == args.limit else None
    if args.json:
        display.print_json(
            {
                "suppressions": [
                    {"address": r.address, "reason": r.reason, "created_at": r.created_at}
                    for r in rows
                ],
                "next_after": more,
            }
        )
        return 0
    out = display.console()
    out.print(
        display.table(
            f"Suppressed addresses{f' after {after}' if after else ''}: {len(rows)}"
            + (" shown" if more else ""),
            ["address", "reason", "since"],
            [[r.address, r.reason, r.created_at] for r in rows],
        )
    )
    if more:
        out.print(f"more: mailq suppressions --after {more}")
    return 0


# -- the parser ----------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    suppress = add_command(
        commands,
        "suppress",
        cmd_suppress,
        "never send to these addresses; cancels their emails that have not gone out",
    )
    suppress.add_argument("addresses", nargs="*", metavar="ADDRESS", help="email addresses")
    suppress.add_argument(
        "--reason", help=f"why (default: {OPERATOR_REASON!r}; with --import {IMPORT_REASON!r})"
    )
    suppress.add_argument(
        "--import",
        dest="import_file",
        metavar="FILE",
        help="a file of one address per line, or a CSV with a column email or address "
        "(and optionally reason); - for stdin; all or nothing",
    )

    unsuppress = add_command(
        commands, "unsuppress", cmd_unsuppress, "take addresses off the suppression list"
    )
    unsuppress.add_argument("addresses", nargs="+", metavar="ADDRESS", help="email addresses")

    listing = add_command(
        commands, "suppressions", cmd_suppressions, "suppressed addresses, in address order"
    )
    listing.add_argument(
        "--limit", type=int, default=LIST_LIMIT, help=f"at most this many ({LIST_LIMIT})"
    )
    listing.add_argument("--after", metavar="ADDRESS", help="start after this address (paging)")
