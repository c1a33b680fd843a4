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
