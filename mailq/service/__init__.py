"""The mailq HTTP service (Starlette)."""
