"""`python -m mailq.worker`: one worker process (the same as `mailq worker`).

An entry point, imported by nothing: it is the one module of the worker allowed to reach the
CLI layer above it (see the import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from mailq.cli.worker import worker_main

raise SystemExit(worker_main())
