"""`uvicorn service.app:app --workers 4` from a checkout: the app of mailq.service.app."""

from __future__ import annotations

from mailq.service.app import app

__all__ = ["app"]
