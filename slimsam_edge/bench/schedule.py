"""The order configurations are measured in: round-robin, repeated, so drift hits every row alike.

A shared machine drifts (turbo, thermals, a neighbour's job). Measuring configuration A for a
minute and then B for a minute puts the drift into the A/B ratio. Running A, B, C, A, B, C, ...
spreads it over all of them; rotating the start of each round also keeps any one configuration from
always running right after the same other one (a warm or cold cache left behind).

Example:
    >>> [f"{s.config}{s.repeat}" for s in interleave(["A", "B", "C"], repeats=3)]
    ['A0', 'B0', 'C0', 'B1', 'C1', 'A1', 'C2', 'A2', 'B2']
    >>> [f"{s.config}{s.repeat}" for s in interleave(["A", "B"], repeats=2, rotate=False)]
    ['A0', 'B0', 'A1', 'B1']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Slot(Generic[T]):
    """One measurement in the schedule: ``config`` for the ``repeat``-th time, at ``position``."""

    position: int
    repeat: int
    index: int
    config: T


def interleave(configs: Sequence[T], repeats: int, *, rotate: bool = True) -> list[Slot[T]]:
    """Every configuration ``repeats`` times, round by round; round ``r`` starts at ``r mod n``
    when ``rotate``.

    Raises:
        UsageError: no configuration, or ``repeats`` < 1.
    """
    if not configs:
        raise UsageError("nothing to schedule: give at least one bundle or --peer")
    if repeats < 1:
        raise UsageError(f"--repeats {repeats}: must be at least 1")
    n = len(configs)
    out: list[Slot[T]] = []
    for r in range(repeats):
        start = r % n if rotate else 0
        for k in range(n):
            i = (start + k) % n
            out.append(Slot(len(out), r, i, configs[i]))
    return out


def by_config(slots: Sequence[Slot[T]], values: Sequence[object]) -> dict[int, list[object]]:
    """Group per-slot ``values`` by configuration index, in repeat order.

    Example:
        >>> slots = interleave(["A", "B"], repeats=2)
        >>> by_config(slots, [10, 20, 21, 11])
        {0: [10, 11], 1: [20, 21]}
    """
    if len(slots) != len(values):
        raise ValueError(f"{len(values)} values for {len(slots)} slots")
    grouped: dict[int, list[object]] = {}
    for slot, value in sorted(zip(slots, values), key=lambda sv: (sv[0].index, sv[0].repeat)):
        grouped.setdefault(slot.index, []).append(value)
    return dict(sorted(grouped.items()))


def positions(slots: Sequence[Slot[T]]) -> Iterator[tuple[int, int]]:
    """(configuration index, repeat) in schedule order: what a report records as the order run."""
    return ((s.index, s.repeat) for s in slots)


def quiet_rounds(rounds: Sequence[dict[str, float]], share: float = 1 / 3) -> list[int]:
    """The indices of the quietest ``share`` of interleaved ``rounds`` (each: configuration ->
    time in that round), at least one: rounds ranked by the sum of their times, each time divided by
    its configuration's median over all rounds (so one slow configuration does not decide). On a
    shared machine a neighbour's burst slows every configuration of the rounds it overlaps; medians
    over the quiet rounds estimate the uncontended latency, and since every configuration ran in
    every round, their ratios stay paired.

    Example:
        >>> rounds = [{"a": 10, "b": 20}, {"a": 15, "b": 31}, {"a": 10.5, "b": 20.5}]
        >>> quiet_rounds(rounds, share=2 / 3)
        [0, 2]

    Raises:
        ValueError: no rounds, a share outside (0, 1], or rounds with different configurations.
    """
    if not rounds or not 0 < share <= 1:
        raise ValueError(f"quiet_rounds: {len(rounds)} rounds, share {share}")
    names = set(rounds[0])
    if any(set(r) != names for r in rounds):
        raise ValueError("quiet_rounds: every round must time the same configurations")
    medians = {n: float(np.median([r[n] for r in rounds])) or 1.0 for n in names}
    load = [sum(r[n] / medians[n] for n in names) for r in rounds]
    keep = max(1, round(share * len(rounds)))
    return sorted(int(i) for i in np.argsort(load, kind="stable")[:keep])
