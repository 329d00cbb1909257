"""`python -m bench [--quick] …` from a checkout (`mailq bench …` runs this)."""

from __future__ import annotations

import argparse
import sys

from bench.command import add_arguments, run_from_args
from mailq.errors import MailqError
from mailq.settings import Settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    try:
        settings = Settings.from_env()
        if getattr(args, "database_url", None):
            settings = settings.with_overrides(database_url=args.database_url)
        return run_from_args(args, settings)
    except MailqError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
