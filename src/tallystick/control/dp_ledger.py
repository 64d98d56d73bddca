"""The privacy-budget ledger: every differentially private release, and what each dataset has left.

A release spends part of its dataset's budget (setting ``dp_budget_epsilon``, the same total for
every dataset). :meth:`Ledger.spend` reads what the dataset has spent and records the new release
in one transaction that holds the write lock from its start (SQLite's ``BEGIN IMMEDIATE``, see
``control.db``; a transaction-scoped advisory lock per dataset on Postgres), so two releases asked
for at once, from two threads or two processes, can never together spend more than the budget:
the second one sees the first one's row. A release beyond the budget is refused with
:class:`BudgetExhausted`, whose message says what is left and how to go on.

Differential privacy composes: the guarantee of a dataset is the sum of the epsilons of all its
releases, which is why the ledger adds them up and why no release is ever forgotten (there is no
command to reset a dataset's spending). See docs/differential-privacy.md.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from tallystick.control import tables as t

if TYPE_CHECKING:
    from tallystick.config import Settings
    from tallystick.control.store import ControlStore

TOLERANCE: Final = 1e-9
"""Slack on the budget comparison, so that ten releases of 0.1 fit a budget of 1.0."""
_LOCK_BASE: Final = 0x7A11_D000_0000  # Postgres advisory locks: one key per dataset


class BudgetExhausted(Exception):
    """A release would spend more than its dataset has left; the message says what to do."""

    def __init__(self, budget: Budget, epsilon: float) -> None:
        self.budget = budget
        self.epsilon = epsilon
        super().__init__(
            f"a release with epsilon {epsilon:g} would exceed the privacy budget of dataset "
            f"{budget.dataset!r}: {budget.remaining:g} of its {budget.total:g} is left "
            f"({budget.spent:g} spent by {budget.releases} release"
            f"{'s' if budget.releases != 1 else ''}). Ask for a smaller epsilon, publish an "
            "earlier release again instead of a new one, or raise the budget (setting "
            "dp_budget_epsilon, TALLYSTICK_DP_BUDGET_EPSILON) knowing that this weakens the "
            "guarantee of every release of the dataset; `tally privacy budget` shows the ledger"
        )


@dataclass(frozen=True, slots=True)
class Budget:
    """What one dataset has spent of its budget ``total``."""

    dataset: str
    total: float
    spent: float
    releases: int
    last_release: dt.datetime | None = None

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)

    def allows(self, epsilon: float) -> bool:
        return self.spent + epsilon <= self.total + TOLERANCE

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "budget": self.total,
            "spent": self.spent,
            "remaining": self.remaining,
            "releases": self.releases,
            "last_release": _iso(self.last_release),
        }


@dataclass(frozen=True, slots=True)
class Release:
    """One recorded release (a ``dp_releases`` row)."""

    id: int
    dataset: str
    at: dt.datetime
    actor: str
    analysis: str
    epsilon: float
    params: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "at": _iso(self.at),
            "actor": self.actor,
            "analysis": self.analysis,
            "epsilon": self.epsilon,
            "params": self.params,
        }


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def check_epsilon(epsilon: float) -> float:
    """``epsilon`` if it is a finite number above 0, else ValueError."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        raise ValueError(f"epsilon must be a number, got {epsilon!r}")
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number above 0, got {epsilon!r}")
    return float(epsilon)


class Ledger:
    """The ledger in one control-plane database, with every dataset's budget ``total``."""

    def __init__(self, engine: sa.Engine, total: float) -> None:
        self.engine = engine
        self.total = float(total)

    @classmethod
    def of(cls, store: ControlStore, settings: Settings) -> Ledger:
        return cls(store.engine, settings.dp_budget_epsilon)

    def _budget(self, conn: sa.Connection, dataset: str) -> Budget:
        c = t.dp_releases.c
        spent, n, last = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(c.epsilon), 0.0),
                sa.func.count(c.id),
                sa.func.max(c.at),
            ).where(c.dataset == dataset)
        ).one()
        if last is not None and not isinstance(last, dt.datetime):  # SQLite's max() is text
            last = dt.datetime.fromisoformat(str(last))
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        return Budget(dataset, self.total, float(spent), int(n), last)

    def budget(self, dataset: str) -> Budget:
        """What ``dataset`` has spent and has left."""
        with self.engine.connect() as conn:
            return self._budget(conn, dataset)

    def check(self, dataset: str, epsilon: float) -> Budget:
        """``dataset``'s budget, or :class:`BudgetExhausted` if ``epsilon`` does not fit in it
        now (a quick look before the work of a release; :meth:`spend` decides)."""
        budget = self.budget(dataset)
        if not budget.allows(check_epsilon(epsilon)):
            raise BudgetExhausted(budget, epsilon)
        return budget

    def spend(
        self,
        dataset: str,
        epsilon: float,
        *,
        actor: str,
        analysis: str,
        params: Mapping[str, Any],
    ) -> tuple[Release, Budget]:
        """Record a release of ``analysis`` spending ``epsilon`` of ``dataset``'s budget, and
        return it with the budget after it; :class:`BudgetExhausted` (nothing recorded) when
        it does not fit. Atomic: concurrent spends never exceed the budget together."""
        epsilon = check_epsilon(epsilon)
        at = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                key = _LOCK_BASE + zlib.crc32(dataset.encode())
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            before = self._budget(conn, dataset)
            if not before.allows(epsilon):
                raise BudgetExhausted(before, epsilon)
            new_id = conn.execute(
                sa.insert(t.dp_releases)
                .values(
                    dataset=dataset,
                    at=at,
                    actor=actor,
                    analysis=analysis,
                    epsilon=epsilon,
                    params=dict(params),
                )
                .returning(t.dp_releases.c.id)
            ).scalar_one()
        release = Release(int(new_id), dataset, at, actor, analysis, epsilon, dict(params))
        after = Budget(dataset, self.total, before.spent + epsilon, before.releases + 1, at)
        return release, after

    def budgets(self, datasets: tuple[str, ...] = ()) -> list[Budget]:
        """Every dataset with a release, and ``datasets`` even without one, by name."""
        c = t.dp_releases.c
        with self.engine.connect() as conn:
            names = set(conn.execute(sa.select(c.dataset).distinct()).scalars()) | set(datasets)
            return [self._budget(conn, name) for name in sorted(names)]

    def releases(self, dataset: str | None = None, limit: int = 100) -> list[Release]:
        """The newest ``limit`` releases (of ``dataset``), newest first."""
        c = t.dp_releases.c
        query = sa.select(t.dp_releases).order_by(c.id.desc()).limit(limit)
        if dataset is not None:
            query = query.where(c.dataset == dataset)
        with self.engine.connect() as conn:
            return [
                Release(int(r.id), r.dataset, r.at, r.actor, r.analysis, float(r.epsilon), r.params)
                for r in conn.execute(query)
            ]
