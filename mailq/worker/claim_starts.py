"""Where the worker's claims start scanning the claim index, per kind and priority.

A claimed email's entry stays in the claim index (emails_due_idx: waiting emails by kind,
priority, run_at, id) until vacuum removes it, or until a scan that finds its row dead to
every transaction marks it so. While a long transaction holds the xmin horizon back (a
report query, a forgotten BEGIN), neither can happen: a claim that scans from the start of
its (kind, priority) walks every email claimed since that transaction began, one heap visit
each, and the drain slows down with every email (measured: from 12,800 to 3,300 emails/s
within 30 seconds). So each claim starts after the key (run_at, id) of the last email this
worker claimed in that kind and priority, and skips the dead prefix.

An email can become due behind that key: handed back or taken back from a lost worker (they
keep their place, run_at and id), deferred by a failing backend, queued with a send_at in
the past or by a transaction that began before the emails last claimed, or skipped while
another transaction held its lock without claiming it. Two rules keep such an email from
waiting long, and keep the claim order of README "Priorities" within that bound:

- The start key is never later than the claim's time minus ENQUEUE_LAG_S: emails queued by
  a transaction that lasted less than that are never behind it.
- Every RESCAN_S seconds, and after anything that may have put emails behind the keys (a
  failed claim, the backend's breaker opening), a claim scans from the start again. So an
  email due behind the keys is claimed at most RESCAN_S after it is due (plus the claim
  loop's own wait), and in order among what that scan finds.

Without a long transaction the dead entries behind the keys are few (vacuum removes them,
the rescans mark them dead), so a rescan costs about what a claim cost before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from mailq.db.claims import Claimed, ScanStarts

# A claim scans from the start of the index at least this often (seconds): the longest an
# email due behind the start keys waits beyond the claim loop's own wait.
RESCAN_S = 5.0
# Emails queued by a transaction shorter than this are never behind a start key (seconds).
ENQUEUE_LAG_S = 1.0
PRIORITIES = 10


class ClaimStarts:
    """The start keys of one worker's claims."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[tuple[str, int], tuple[datetime, int]] = {}
        self._rescanned_at: float | None = None
        # A claim from the start keys ran since the last rescan (it may have passed over
        # emails behind them: a rescan is owed).
        self._owed = False

    def rewind(self) -> None:
        """The next claim scans from the start (whenever it comes: none is owed before)."""
        self._rescanned_at = None
        self._owed = False

    def rescan_due(self) -> bool:
        at = self._rescanned_at
        return at is None or self._clock() - at >= RESCAN_S

    def rescan_in(self) -> float:
        """Seconds until a claim must scan from the start (infinite: none is owed, the last
        claim did)."""
        at = self._rescanned_at
        if at is None or not self._owed:
            return math.inf
        return max(0.0, at + RESCAN_S - self._clock())

    def for_claim(self, kinds: Sequence[str]) -> ScanStarts | None:
        """The starts for a claim of these kinds (in this order); None: this claim scans from
        the start (a rescan is due)."""
        if self.rescan_due():
            return None
        return self.of(kinds)

    def of(self, kinds: Sequence[str]) -> ScanStarts:
        """The starts of these kinds (in this order), as they are."""
        run_at: list[datetime | None] = []
        ids: list[int | None] = []
        for kind in kinds:
            for priority in range(PRIORITIES):
                key = self._keys.get((kind, priority))
                run_at.append(None if key is None else key[0])
                ids.append(None if key is None else key[1])
        return ScanStarts(run_at, ids)

    def learn(self, claimed: Claimed, rescan: bool) -> None:
        """After a claim (`rescan`: one that scanned from the start): the next scan of each
        (kind, priority) it claimed in starts after the last email claimed, or at the
        claim's time less ENQUEUE_LAG_S if that is earlier."""
        if rescan:
            self._rescanned_at = self._clock()
        self._owed = not rescan
        if not claimed:
            return
        lag = claimed[0].claimed_at - timedelta(seconds=ENQUEUE_LAG_S)
        for key, (run_at, email_id) in claimed.last.items():
            self._keys[key] = (run_at, email_id) if run_at < lag else (lag, 0)
