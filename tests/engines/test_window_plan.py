"""The first-N crawl's window plan: a probe, one window sized for the rest, rarely a tail.

The plan is run here against simulated lists whose rows succeed at random (and in runs, as dead hosts
make them), exactly as ``fetch_first`` runs it: each window's rows are tried, the successes counted,
the next window planned from what was seen.
"""
from __future__ import annotations

import random

import pytest

from vlprep.pipeline.engines.webcrawl import (SUB_SHARD, DownloadConfig, plan_window,
                                              sub_shard_rows)


def simulate(outcomes: list[bool], count: int, config: DownloadConfig) -> tuple[list[int], int]:
    """(window sizes, rows tried) of a first-``count`` crawl of a list whose row i succeeds iff outcomes[i]."""
    sizes, successes, tried = [], 0, 0
    while successes < count and tried < len(outcomes):
        size = min(plan_window(count - successes, successes, tried, config), len(outcomes) - tried)
        successes += sum(outcomes[tried:tried + size])
        tried += size
        sizes.append(size)
    return sizes, tried


def needed(outcomes: list[bool], count: int) -> int:
    """Rows up to and including the count-th success: what any plan must try at least."""
    seen = 0
    for i, ok in enumerate(outcomes):
        seen += ok
        if seen == count:
            return i + 1
    return len(outcomes)


@pytest.mark.parametrize("rate", [0.3, 0.55, 0.7, 0.9])
def test_a_probe_then_one_window_almost_always_with_little_overshoot(rate):
    rng = random.Random(int(rate * 100))
    count, runs = 50_000, 40
    windows, overshoot = [], []
    for _ in range(runs):
        outcomes = [rng.random() < rate for _ in range(200_000)]
        sizes, tried = simulate(outcomes, count, DownloadConfig())
        windows.append(len(sizes))
        overshoot.append(tried / needed(outcomes, count) - 1)
        assert sizes[0] == 18_215  # a quarter of 50,000 / 0.7 * 1.02
    assert sum(w <= 2 for w in windows) >= 0.95 * runs, windows  # probe + one window
    assert max(windows) <= 3  # at most a short tail
    assert sum(overshoot) / runs < 0.05 and max(overshoot) < 0.08, max(overshoot)


@pytest.mark.parametrize("rate, windows, most_over", [(0.3, 2, 0.08), (0.7, 1, 0.05), (0.9, 1, 0.33)])
def test_a_small_crawl_is_one_window_at_the_prior_rate(rate, windows, most_over):
    """Up to 20,000 rows at 70 %, one window start costs more than the rows a low prior over-tries."""
    rng = random.Random(5)
    for _ in range(20):
        outcomes = [rng.random() < rate for _ in range(40_000)]
        sizes, tried = simulate(outcomes, 10_000, DownloadConfig())
        assert sizes[0] == 14_572 and len(sizes) == windows
        assert tried / needed(outcomes, 10_000) - 1 < most_over


def test_a_large_count_probes_a_quarter_and_plans_one_big_window():
    rng = random.Random(7)
    outcomes = [rng.random() < 0.65 for _ in range(900_000)]
    sizes, tried = simulate(outcomes, 500_000, DownloadConfig())
    assert sizes[0] == 182_143  # a quarter of 500,000 / 0.7 * 1.02
    assert len(sizes) == 2 and tried / needed(outcomes, 500_000) < 1.01


def test_clustered_failures_cost_at_most_a_tail():
    """Dead hosts fail runs of rows: the probe's rate is then a poorer guess, and a tail makes up for it."""
    rng = random.Random(3)
    outcomes: list[bool] = []
    while len(outcomes) < 60_000:
        alive = rng.random() < 0.7
        outcomes += [alive and rng.random() < 0.95] * rng.randint(1, 200)
    sizes, _ = simulate(outcomes, 20_000, DownloadConfig())
    assert 2 <= len(sizes) <= 4


def test_small_counts_take_one_window_and_max_window_caps_every_window():
    assert plan_window(16, 0, 0, DownloadConfig()) == 64  # min_window
    assert plan_window(500, 0, 0, DownloadConfig()) == 729  # a small crawl: all of it at once
    assert plan_window(13_700, 0, 0, DownloadConfig()) == 19_963  # just under the one-window limit
    assert plan_window(13_800, 0, 0, DownloadConfig()) == 5_028  # just over it: the probe
    capped = DownloadConfig(max_window=300)
    sizes, _ = simulate([True, False] * 5_000, 1_000, capped)
    assert max(sizes) == 300 and len(sizes) >= 7


def test_parts_of_a_window_depend_on_its_size_alone():
    assert sub_shard_rows(64) == 64 and sub_shard_rows(1_000) == 64 and sub_shard_rows(4_000) == 250
    assert sub_shard_rows(16_000) == SUB_SHARD and sub_shard_rows(700_000) == SUB_SHARD
