"""The in-flight ledger: which claimed emails a worker holds, and the one rule that bounds
what a kill -9 can send twice.

Every email a worker claims takes a slot, from its claim until its outcome is committed.
A worker may hold more claimed emails than its concurrency (claimed ahead, so that a claim
takes a batch instead of the few slots just freed: mailq.worker.claimer), but it *starts*
one, hands it to the sender, only while fewer than `concurrency` of its started emails wait
for their outcome (`may_start`). A started slot is freed only once that email's outcome is
committed (`free_committed`), never earlier; a slot whose email never started is freed once
the hand-back is committed (`free_handed_back`). So at any moment at most `concurrency`
emails of a worker have gone to SMTP without their outcome committed; the claimed ones that
never started are not sent by it (handed back at a graceful stop, taken back after a kill).

The reserve keeps `reserve` of the `concurrency` sends for one kind (`welcome`): the other
kinds start only while fewer than `concurrency - reserve` of theirs are sending.

A slot is one attempt (the email's id and attempt number), not one email: a worker whose lease
lapsed may claim an email again, once it was taken back, while its old attempt of it is still
in flight; the old attempt stays revoked, and each attempt frees its own slot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mailq.models import ClaimedEmail

# A slot's key: the email's id and the attempt number of its claim.
AttemptKey = tuple[int, int]


def key_of(email: ClaimedEmail) -> AttemptKey:
    return email.id, email.attempt


@dataclass(slots=True)
class Slot:
    """One claimed email; `started` once a lane hands it to the sender; `revoked` once the
    worker learnt that its attempt no longer holds the email (taken back after its lease
    lapsed): it must not be sent by this worker."""

    email: ClaimedEmail
    started: bool = False
    revoked: bool = False


class SlotLedger:
    """The worker's slots, by email id, and how many each kind holds (the claim plan)."""

    def __init__(
        self, concurrency: int | None = None, *, reserved_kind: str = "", reserve: int = 0
    ) -> None:
        """`concurrency`: the most started emails without a committed outcome (None: no
        limit of the ledger's own; the lanes alone bound the sends)."""
        self._slots: dict[AttemptKey, Slot] = {}
        self._by_kind: Counter[str] = Counter()
        self._limit = concurrency
        self._reserved_kind = reserved_kind
        self._reserve = reserve if reserved_kind else 0
        self._sending: set[AttemptKey] = set()  # started, outcome not yet committed
        self._sending_reserved = 0  # of which of the reserved kind

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, email_id: object) -> bool:
        return any(key[0] == email_id for key in self._slots)

    @property
    def by_kind(self) -> Mapping[str, int]:
        """Slots held per kind (kinds holding none are absent)."""
        return self._by_kind

    def held_ids(self) -> list[int]:
        return list(dict.fromkeys(key[0] for key in self._slots))

    def emails(self) -> list[ClaimedEmail]:
        return [s.email for s in self._slots.values()]

    def revoked(self, email: ClaimedEmail) -> bool:
        slot = self._slots.get(key_of(email))
        return slot is not None and slot.revoked

    def revoke_unheld(self, asked: Iterable[ClaimedEmail], held: set[AttemptKey]) -> int:
        """Asked about the attempts `asked`, the database says the worker still holds only
        `held`: the other slots among them are revoked (not to be sent by this worker).
        Returns how many were revoked now."""
        revoked = 0
        for email in asked:
            key = key_of(email)
            slot = self._slots.get(key)
            if slot is not None and key not in held and not slot.revoked:
                slot.revoked = True
                revoked += 1
        return revoked

    @property
    def sending(self) -> int:
        """Started emails whose outcome is not committed yet."""
        return len(self._sending)

    def may_start(self, kind: str) -> bool:
        """Whether an email of `kind` may be handed to the sender now."""
        limit = self._limit
        if limit is None:
            return True
        sending = len(self._sending)
        if sending >= limit:
            return False
        if kind == self._reserved_kind:
            return True
        return sending - self._sending_reserved < limit - self._reserve

    def start(self, slot: Slot) -> None:
        """The slot's email goes to the sender (after `may_start` said it may)."""
        slot.started = True
        email = slot.email
        key = key_of(email)
        if key in self._slots and key not in self._sending:
            self._sending.add(key)
            if email.kind == self._reserved_kind:
                self._sending_reserved += 1

    def unstarted(self) -> list[ClaimedEmail]:
        return [s.email for s in self._slots.values() if not s.started]

    def take(self, claimed: Iterable[ClaimedEmail]) -> list[Slot]:
        """A slot for each email just claimed."""
        slots = self._slots
        taken = []
        for email in claimed:
            slot = Slot(email)
            slots[key_of(email)] = slot
            taken.append(slot)
        self._by_kind.update(s.email.kind for s in taken)
        return taken

    def free_committed(self, emails: Iterable[ClaimedEmail]) -> None:
        """The outcomes of these emails are committed (or were refused by the database, which
        is as final): their slots are free."""
        for email in emails:
            self._free(email)

    def free_handed_back(self, emails: Iterable[ClaimedEmail]) -> None:
        """These emails were handed back before they started (committed): their slots are free.
        A started email is not freed this way: only its committed outcome frees it."""
        emails = list(emails)
        started = [
            e.id for e in emails if (s := self._slots.get(key_of(e))) is not None and s.started
        ]
        if started:
            raise ValueError(f"emails {started} started: only their committed outcome frees them")
        for email in emails:
            self._free(email)

    def _free(self, email: ClaimedEmail) -> None:
        key = key_of(email)
        if key in self._sending:
            self._sending.discard(key)
            if email.kind == self._reserved_kind:
                self._sending_reserved -= 1
        if self._slots.pop(key, None) is not None:
            self._by_kind[email.kind] -= 1
            if self._by_kind[email.kind] <= 0:
                del self._by_kind[email.kind]
