"""`mailq campaign create`: a campaign from a CSV of recipients (column `email` plus the
template context), one email per recipient, due at --send-at."""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from typing import Any, TextIO

import asyncpg

from mailq.campaigns import NewCampaign, create_campaign, recipients_from_csv
from mailq.cli import display
from mailq.cli.command import CliError
from mailq.cli.options import configured, counted, database_url, existing_file, read_option
from mailq.config import Config
from mailq.db.schema import ensure_current
from mailq.errors import InvalidEmail
from mailq.settings import Settings
from mailq.wire import parse_send_at


def new_campaign(args: argparse.Namespace) -> NewCampaign:
    """The campaign the flags describe; CliError for a bad one."""
    try:
        send_at = parse_send_at(args.send_at)
        assert send_at is not None
        return NewCampaign(
            name=args.name,
            kind=args.kind,
            send_at=send_at,
            subject=args.subject,
            text=read_option(args.text, "--text"),
            html=read_option(args.html, "--html"),
            template=args.template,
            from_address=args.from_address,
        )
    except InvalidEmail as exc:
        raise CliError(str(exc)) from None


async def create_from_csv(
    settings: Settings, config: Config, args: argparse.Namespace, stream: TextIO
) -> str:
    """Create the campaign with the recipients of `stream`; returns the summary line."""
    campaign = new_campaign(args)
    conn = await asyncpg.connect(database_url(settings))
    try:
        await ensure_current(conn)
        try:
            with display.progress("importing recipients") as tracker:
                created, added = await create_campaign(
                    conn,
                    campaign,
                    counted(recipients_from_csv(stream), tracker),
                    default_from=settings.from_address,
                    kinds=config.kinds,
                    templates=config.templates,
                )
        except InvalidEmail as exc:
            raise CliError(f"{args.csv}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise CliError(f"{args.csv}: not UTF-8 text (byte {exc.start} of a line)") from None
        except csv.Error as exc:
            raise CliError(f"{args.csv}: not a CSV file ({exc})") from None
    finally:
        await conn.close()
    extra = f", {added.suppressed} suppressed" if added.suppressed else ""
    return (
        f"campaign {created.id} ({created.name!r}, {created.kind}) due at "
        f"{created.send_at.isoformat()}: {added.added} recipients, "
        f"{added.duplicates} duplicates ignored{extra}"
    )


def cmd_campaign_create(args: argparse.Namespace) -> int:
    settings, config = configured(args)
    if args.csv == "-":
        summary = asyncio.run(create_from_csv(settings, config, args, sys.stdin))
    else:
        with existing_file(args.csv, "--csv").open(encoding="utf-8", newline="") as stream:
            summary = asyncio.run(create_from_csv(settings, config, args, stream))
    print(summary)
    return 0


def add_commands(commands: Any) -> None:
    campaign = commands.add_parser("campaign", help="campaigns: one email per recipient")
    campaign_commands = campaign.add_subparsers(dest="campaign_command", required=True)
    create = campaign_commands.add_parser(
        "create", help="create a campaign from a CSV of recipients (column email + context)"
    )
    create.add_argument("--csv", required=True, help="a CSV file with a header row, or -")
    create.add_argument("--name", required=True, help="the campaign's name")
    create.add_argument("--kind", required=True, help="e.g. search_engine")
    create.add_argument("--send-at", required=True, help="RFC 3339, e.g. 2030-01-01T09:00:00Z")
    create.add_argument("--template", help="a named template (default: the kind's)")
    create.add_argument("--subject", help="inline subject (a Jinja2 template)")
    create.add_argument("--text", help="inline text body, or @FILE")
    create.add_argument("--html", help="inline HTML body, or @FILE")
    create.add_argument("--from", dest="from_address", help="the From address (MAILQ_FROM)")
    create.set_defaults(handler=cmd_campaign_create)
