"""From a checkout, `uvicorn service.app:app` serves the HTTP app of `mailq.service` (this folder
is not shipped in the wheel: there the same app is `mailq.service.app:app`)."""
