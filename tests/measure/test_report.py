"""The uplift computation against hand computations (Newcombe 1998's worked example, Katz)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from streams.measure import report
from streams.measure.command import format_report


def test_wilson_interval_matches_the_hand_computation() -> None:
    # 81 of 263 (Newcombe 1998, Table I, example c): 0.2553 to 0.3662
    lo, hi = report.wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert report.wilson(0, 10)[0] == 0.0


def test_newcombe_difference_interval_matches_the_published_example() -> None:
    # 56/70 vs 48/80 (Newcombe 1998, Table II, example a; method 10): 0.0524 to 0.3339
    d, lo, hi = report.newcombe(56, 70, 48, 80)  # type: ignore[misc]
    assert d == pytest.approx(0.2)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    assert report.newcombe(1, 0, 1, 10) is None


def test_katz_ratio_interval_matches_the_hand_computation() -> None:
    # RR = 0.8 / 0.6; se = sqrt(1/56 - 1/70 + 1/48 - 1/80) = 0.109109
    se = math.sqrt(1 / 56 - 1 / 70 + 1 / 48 - 1 / 80)
    assert se == pytest.approx(0.109109, abs=1e-6)
    r, lo, hi = report.katz(56, 70, 48, 80)  # type: ignore[misc]
    assert r == pytest.approx(1 / 3)
    assert lo == pytest.approx(math.exp(math.log(4 / 3) - 1.959964 * 0.109109) - 1, abs=1e-5)
    assert (round(lo, 4), round(hi, 4)) == (0.0766, 0.6512)
    assert report.katz(0, 70, 48, 80) is None  # no conversion: the ratio's interval is undefined


def _decision(tid: str, rule: str, outcome: str) -> dict[str, Any]:
    return {"triggerId": tid, "outcome": outcome, "rule": {"name": rule, "version": 1}}


def test_records_are_counted_once_per_trigger_and_by_group() -> None:
    decisions = [_decision(f"t{i}", "r", "activated") for i in range(70)]
    decisions += [_decision(f"h{i}", "r", "holdout") for i in range(80)]
    decisions += [_decision("s1", "r", "suppressed"), _decision("e1", "r", "error")]
    decisions += decisions[:5]  # produced twice (a crash between produce and commit)
    conversions = [{"triggerId": f"t{i}", "lagSeconds": 10.0} for i in range(56)]
    conversions += [{"triggerId": f"h{i}", "lagSeconds": 20.0} for i in range(48)]
    conversions += [*conversions[:3], {"triggerId": "s1"}, {"triggerId": "unknown"}]
    (r,) = report.uplift(decisions, conversions)
    assert (r.groups["treated"].triggers, r.groups["treated"].conversions) == (70, 56)
    assert (r.groups["holdout"].triggers, r.groups["holdout"].conversions) == (80, 48)
    text = format_report(decisions, conversions)
    assert "rate   80.00%" in text and "rate   60.00%" in text
    assert "absolute +20.00 pp [+5.24, +33.39]" in text
    assert "relative +33.33% [+7.66, +65.12]" in text
    doc = r.to_dict()
    assert doc["uplift"]["low"] == pytest.approx(0.0524, abs=1e-4)
    assert doc["medianLagSeconds"] == 10.0  # 56 lags of 10 s, 48 of 20 s


def test_a_rule_without_a_holdout_has_no_uplift() -> None:
    (r,) = report.uplift([_decision("t", "r", "activated")], [])
    assert r.uplift is None and r.relative_uplift is None
    assert "n/a" in report.render([r])
    assert "no activated or held-out triggers" in report.render([])


def test_report_without_a_reachable_kafka_is_one_line_and_exit_2() -> None:
    from click.testing import CliRunner

    from streams.cli import main
    from streams.stack import free_port

    res = CliRunner().invoke(main, ["report"], env={"CXSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert res.exit_code == 2, res.output
    (line,) = [x for x in res.output.splitlines() if x.startswith("Error:")]
    assert "CXSTREAM_KAFKA_BOOTSTRAP" in line and "cannot read" in line
