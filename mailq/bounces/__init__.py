"""After the relay says 250: bounces, complaints and the events that tell of them.

- `verp`: signed VERP envelope senders, `b-<token>@MAILQ_BOUNCE_DOMAIN`.
- `events`: the normalised `Event` every source produces.
- `classify`: hard or soft, sender-side or not, from a status code and its text.
- `dsn` (with `arf`, `parts`, `report`): reading inbound DSNs, feedback reports and text bounces.
- `webhooks/`: one module per ESP, each verifying its provider's signature and mapping the
  payload to events.
"""

from __future__ import annotations
