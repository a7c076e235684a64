"""The batch state machine (contract §12.4), as a table and one function.

    validating ─ok─▶ in_progress ─▶ finalizing ─▶ completed
        │                 ├── window passes ──▶ expired
        └─bad file─▶ failed
    validating | in_progress | finalizing ─cancel─▶ cancelling ─▶ cancelled

Every status change, by the API (cancel) or the worker, goes through
`transition`, which also stamps the state's `*_at` time.
"""

from __future__ import annotations

from tunelab.batches.tables import BatchRow
from tunelab.errors import InvalidRequest

TRANSITIONS: dict[str, frozenset[str]] = {
    "validating": frozenset({"in_progress", "failed", "cancelling"}),
    "in_progress": frozenset({"finalizing", "expired", "cancelling"}),
    "finalizing": frozenset({"completed", "cancelling"}),
    "cancelling": frozenset({"cancelled"}),
    "failed": frozenset(),
    "completed": frozenset(),
    "expired": frozenset(),
    "cancelled": frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# What the worker has to do for a batch in each of these states.
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


def can(status: str, to: str) -> bool:
    return to in TRANSITIONS[status]


def transition(batch: BatchRow, to: str, at: int) -> None:
    """Move `batch` to `to` (in the caller's transaction), or refuse with a 400."""
    if not can(batch.status, to):
        raise InvalidRequest(
            f"Batch {batch.id} is {batch.status}; it cannot become {to}"
            + (" (it has finished)." if batch.status in TERMINAL else "."),
            param="batch_id",
            code="invalid_batch_status",
        )
    batch.status = to
    setattr(batch, f"{to}_at", at)
