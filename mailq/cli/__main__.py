"""`python -m mailq.cli`: the `mailq` command without its console script."""

from __future__ import annotations

from mailq.cli.main import main

raise SystemExit(main())
