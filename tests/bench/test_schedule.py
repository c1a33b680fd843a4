"""The interleaving order of bench's rows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from slimsam_edge.bench.schedule import by_config, interleave, quiet_rounds
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


def test_quiet_rounds_pick_the_rounds_a_burst_did_not_slow():
    rng = np.random.default_rng(0)
    base = {"fast": 10.0, "slow": 40.0, "mid": 20.0}
    burst = {3, 4, 9}  # a neighbour's job slows every configuration of these rounds by half
    rounds = [{k: v * (1.5 if r in burst else 1.0) * (1 + 0.01 * rng.standard_normal()) for k, v in base.items()}
              for r in range(12)]
    quiet = quiet_rounds(rounds, share=0.5)
    assert len(quiet) == 6 and not set(quiet) & burst and quiet == sorted(quiet)
    assert quiet_rounds(rounds[:1]) == [0]  # at least one round
    rounds[5] = {**rounds[5], "slow": 400.0}  # one configuration's outlier weighs like any other's
    assert 5 not in quiet_rounds(rounds, share=0.5)
    with pytest.raises(ValueError, match="share 0"):
        quiet_rounds(rounds, share=0)
    with pytest.raises(ValueError, match="same configurations"):
        quiet_rounds([{"a": 1.0}, {"b": 1.0}])
