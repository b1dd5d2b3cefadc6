"""The policy's ``[measurement]`` table and the holdout assignment."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.consent.policy import DEFAULT_POLICY, load_policy
from streams.exceptions import PolicyError
from streams.measure import holdout
from streams.measure.config import Measurement

EXAMPLE = Path(__file__).parents[2] / "deploy" / "policy.example.toml"


def _load(tmp_path: Path, table: str) -> Measurement:
    p = tmp_path / "policy.toml"
    p.write_text(EXAMPLE.read_text().split("\n# Measurement")[0] + "\n" + table)
    return load_policy(p).measurement


def _error(tmp_path: Path, table: str) -> str:
    with pytest.raises(PolicyError) as info:
        _load(tmp_path, table)
    msg = str(info.value)
    assert "\n" not in msg and "CXSTREAM_POLICY_FILE" in msg
    return msg


def test_the_shipped_example_documents_a_valid_measurement_table(tmp_path: Path) -> None:
    assert not load_policy(EXAMPLE).measurement.measured  # commented out: the example is the default
    text = EXAMPLE.read_text()
    block = text[text.index("# [measurement]") :]
    table = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines())
    m = _load(tmp_path, table)
    assert m.conversions("cart_abandoned") == (frozenset({"Order Completed"}), 7 * 86_400_000)
    assert m.holdout_bucket_limit("inactive_45d") == 1000


def test_defaults_hold_nobody_out_and_measure_nothing() -> None:
    m = DEFAULT_POLICY.measurement
    assert m.holdout_bucket_limit("cart_abandoned") == 0 and m.conversions("cart_abandoned") is None
    assert not m.measured


def test_rule_settings_override_the_table(tmp_path: Path) -> None:
    m = _load(
        tmp_path,
        """[measurement]
holdout_percent = 10
[measurement.rules.cart_abandoned]
holdout_percent = 2.5
conversion_events = ["Order Completed"]
conversion_window_days = 3
[measurement.rules.inactive_45d]
conversion_events = ["Order Completed", "Product Viewed"]
""",
    )
    assert m.holdout_bucket_limit("cart_abandoned") == 250
    assert m.holdout_bucket_limit("inactive_45d") == 1000 and m.holdout_bucket_limit("other") == 1000
    assert m.conversions("cart_abandoned") == (frozenset({"Order Completed"}), 3 * 86_400_000)
    assert m.conversions("inactive_45d") == (frozenset({"Order Completed", "Product Viewed"}), 7 * 86_400_000)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ("[measurement]\nholdout_percent = 101\n", "measurement.holdout_percent"),
        ("[measurement]\nholdout_percent = -1\n", "greater than or equal to 0"),
        ("[measurement]\nholdout_percent = 'ten'\n", "measurement.holdout_percent"),
        ("[measurement.rules.r]\nconversion_window_days = 0\n", "measurement.rules.r.conversion_window_days"),
        ("[measurement.rules.r]\nconversion_events = ['A', 'A']\n", "event 'A' is listed twice"),
        ("[measurement.rules.r]\nconversion_events = [' ']\n", "empty event name"),
        ("[measurement.rules.r]\nholdout = 5\n", "measurement.rules.r.holdout"),
        ("[measurement]\nwindow = 5\n", "measurement.window"),
    ],
)
def test_a_bad_value_fails_start_up_with_one_line(tmp_path: Path, table: str, says: str) -> None:
    assert says in _error(tmp_path, table)


def test_holdout_buckets_are_stable_uniform_and_per_rule() -> None:
    assert holdout.bucket("p_1", "cart_abandoned") == holdout.bucket("p_1", "cart_abandoned")
    assert holdout.bucket("p_1", "cart_abandoned") == 9855  # fixed forever: a change regroups everyone
    pids = [f"p_{i}" for i in range(20_000)]
    share = sum(holdout.held_out(p, "cart_abandoned", 1000) for p in pids) / len(pids)
    assert 0.09 < share < 0.11
    # independent per rule: being held out of one rule says nothing about another
    both = sum(holdout.held_out(p, "a", 5000) and holdout.held_out(p, "b", 5000) for p in pids) / len(pids)
    assert 0.23 < both < 0.27
    # raising the percent only adds people
    small = {p for p in pids if holdout.held_out(p, "r", 500)}
    assert small <= {p for p in pids if holdout.held_out(p, "r", 1500)}
    assert not any(holdout.held_out(p, "r", 0) for p in pids[:100])
    assert all(holdout.held_out(p, "r", 10_000) for p in pids[:100])
