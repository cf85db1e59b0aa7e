"""The sample flow: every row that enters is used or dropped with a counted reason."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class FlowStep:
    """One drop in the flow: ``n_dropped`` rows removed for ``reason`` (naming column or rule)."""

    reason: str
    n_dropped: int
    stage: str  # "validation", "missing", "window", "model"
    column: str | None = None


@dataclass(frozen=True)
class SampleFlow:
    """Rows read, each drop with its reason, and rows used (``n_used == n_read - sum(drops)``)."""

    n_read: int
    steps: tuple[FlowStep, ...] = field(default_factory=tuple)

    @property
    def n_dropped(self) -> int:
        return sum(s.n_dropped for s in self.steps)

    @property
    def n_used(self) -> int:
        return self.n_read - self.n_dropped

    def drop(self, reason: str, n: int, stage: str, column: str | None = None) -> SampleFlow:
        """Return a new flow with one more step (steps of zero rows are kept out)."""
        if n < 0:
            raise ValueError("a flow step cannot drop a negative number of rows")
        if n == 0:
            return self
        return replace(self, steps=(*self.steps, FlowStep(reason, int(n), stage, column)))

    def dropped_by_reason(self) -> dict[str, int]:
        """Reason -> rows dropped (the ``dropped`` field of the CLI's JSON contract)."""
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.reason] = out.get(s.reason, 0) + s.n_dropped
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_read": self.n_read,
            "steps": [
                {"stage": s.stage, "reason": s.reason, "column": s.column, "n_dropped": s.n_dropped}
                for s in self.steps
            ],
            "n_used": self.n_used,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleFlow:
        steps = tuple(
            FlowStep(s["reason"], int(s["n_dropped"]), s["stage"], s.get("column")) for s in d["steps"]
        )
        return cls(int(d["n_read"]), steps)

    def rows(self) -> list[tuple[str, int, int]]:
        """(label, rows dropped, rows remaining) for tables: read, each step, used."""
        out = [("Rows read", 0, self.n_read)]
        left = self.n_read
        for s in self.steps:
            left -= s.n_dropped
            out.append((s.reason, s.n_dropped, left))
        out.append(("Rows used", 0, left))
        return out
