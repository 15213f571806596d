"""Metric values on hand-computed cases (tests/data/metric_cases.json) and the paired tests."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from search import metrics as M

CASES = json.loads((Path(__file__).parent / "data" / "metric_cases.json").read_text())["cases"]


def test_doctests_pass():
    result = doctest.testmod(M)
    assert result.attempted > 10 and result.failed == 0


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hand_computed_case(case):
    scored = M.score_ranking(case["ranked"], case["relevant"])
    for level in M.LEVELS:
        expected = dict(case[level])
        assert scored[level]["first_rank"] == expected.pop("first_rank")
        for metric, value in expected.items():
            assert scored[level]["scores"][metric] == pytest.approx(value, abs=1e-6), (level, metric)


def test_every_metric_of_the_document_is_computed():
    assert set(M.query_scores(1)) == {"recall@1", "recall@5", "recall@10", "recall@50", "ndcg@10", "mrr@10"}


def test_relative_paths_join_the_base_url_and_absolute_urls_stay():
    got = M.resolve_relevant(
        ["doc/debian/FAQ/pkgtools.en.html#filesearch", "/doc/x.html", "http://Other:80/y.html#a"],
        "http://127.0.0.1:8123/",
    )
    assert got == [
        "http://127.0.0.1:8123/doc/debian/FAQ/pkgtools.en.html#filesearch",
        "http://127.0.0.1:8123/doc/x.html",
        "http://other/y.html#a",
    ]
    # Joined to a base with a path prefix, the prefix is kept.
    assert M.resolve_relevant(["doc/a.html"], "http://h/share") == ["http://h/share/doc/a.html"]


def test_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown level"):
        M.at_level("http://h/a", "paragraph")


def test_means_and_percentiles():
    assert M.mean_scores([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.0}]) == {"a": 0.5, "b": 0.0}
    assert M.percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_randomization_test_separates_real_from_no_difference():
    rng = np.random.default_rng(1)
    a = rng.random(200)
    better = np.clip(a + 0.1 + rng.normal(0, 0.05, 200), 0, 1)
    noise = np.clip(a + rng.normal(0, 0.05, 200), 0, 1)
    assert M.paired_randomization_test(a, better) < 0.001
    assert M.paired_randomization_test(a, noise) > 0.05
    # Symmetric and deterministic for a fixed seed.
    assert M.paired_randomization_test(a, better) == M.paired_randomization_test(better, a)
    assert M.paired_randomization_test(a, noise, seed=3) == M.paired_randomization_test(a, noise, seed=3)


def test_randomization_test_matches_the_exact_permutation_distribution():
    # Differences (+1, +1, +1, -1): of the 16 sign patterns, those with |mean| >= 0.5 are
    # the 2 all-equal ones and the 8 with exactly one sign different: p = 10/16.
    a, b = [0, 0, 0, 1], [1, 1, 1, 0]
    p = M.paired_randomization_test(a, b, n_resamples=100_000)
    assert p == pytest.approx(10 / 16, abs=0.01)


def test_bootstrap_interval_covers_the_difference():
    a = [0.0, 1.0, 0.5, 0.5] * 25
    b = [0.5, 1.0, 1.0, 0.5] * 25
    out = M.paired_bootstrap(a, b)
    assert out["diff"] == pytest.approx(0.25)
    assert out["low"] < 0.25 < out["high"] and out["low"] > 0
    assert out["p"] < 0.01


def test_paired_tests_need_equal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        M.paired_randomization_test([1.0], [1.0, 0.0])
