"""The interleaving order of bench's rows."""

from __future__ import annotations

from collections import Counter

import pytest

from slimsam_edge.bench.schedule import by_config, interleave
from slimsam_edge.errors import UsageError


def test_each_config_once_per_round_and_rounds_rotate():
    configs = ["a", "b", "c", "d"]
    slots = interleave(configs, repeats=5)
    assert len(slots) == 20 and [s.position for s in slots] == list(range(20))
    for r in range(5):
        rnd = [s for s in slots if s.repeat == r]
        assert sorted(s.config for s in rnd) == configs  # every config once per round
        assert rnd[0].index == r % 4                      # the round starts one further on
    assert Counter(s.config for s in slots) == {c: 5 for c in configs}
    # no config always follows the same one
    followers = {c: {slots[i + 1].config for i in range(19) if slots[i].config == c} for c in configs}
    assert all(len(f) > 1 for f in followers.values())


def test_one_config_and_bad_counts():
    assert [(s.index, s.repeat) for s in interleave(["x"], 3)] == [(0, 0), (0, 1), (0, 2)]
    with pytest.raises(UsageError, match="at least one bundle"):
        interleave([], 2)
    with pytest.raises(UsageError, match="--repeats 0"):
        interleave(["x"], 0)


def test_by_config_regroups_in_repeat_order():
    slots = interleave(["a", "b", "c"], 3)
    values = [f"{s.config}{s.repeat}" for s in slots]
    assert by_config(slots, values) == {0: ["a0", "a1", "a2"], 1: ["b0", "b1", "b2"], 2: ["c0", "c1", "c2"]}
    with pytest.raises(ValueError):
        by_config(slots, values[:-1])
