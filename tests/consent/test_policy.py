"""The policy as data: the shipped example, validation at start, regimes and residency lookups."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from streams.consent.policy import DEFAULT_POLICY, EU_EEA, Policy, duration_ms, load_policy
from streams.exceptions import ConfigError, PolicyError

EXAMPLE = Path(__file__).parents[2] / "deploy" / "policy.example.toml"


def _doc() -> dict[str, object]:
    return tomllib.loads(EXAMPLE.read_text())


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(_write(tmp_path, text))
    msg = str(info.value)
    assert "\n" not in msg, "a policy error is one line"
    assert str(tmp_path / "policy.toml") in msg and "CXSTREAM_POLICY_FILE" in msg
    return msg


def _edit(old: str, new: str) -> str:
    text = EXAMPLE.read_text()
    assert old in text, old
    return text.replace(old, new, 1)


def test_the_example_file_is_the_builtin_policy_except_its_version() -> None:
    example = load_policy(EXAMPLE)
    assert example.version != DEFAULT_POLICY.version
    assert example.model_copy(update={"version": DEFAULT_POLICY.version}) == DEFAULT_POLICY


def test_no_file_means_the_builtin_policy() -> None:
    assert load_policy(None) is DEFAULT_POLICY


def test_the_builtin_policy_covers_the_purposes_regimes_and_residency_of_the_issue() -> None:
    p = DEFAULT_POLICY
    assert {"marketing", "advertising", "personalization", "analytics"} <= set(p.purposes)
    assert p.channels["email"] == "marketing" and p.channels["ads"] == "advertising"
    assert p.region_of("DE") == "EU" and p.regime_of("EU") == "opt_in"
    assert p.region_of("US") == "US" and p.regime_of("US", "marketing") == "opt_out"
    assert p.region_of(None) == p.region_of("BR") == "OTHER" and p.regime_of("OTHER") == "opt_in"
    for ch in p.channels:
        assert all(d != "esp-us" and d != "ads-us" for d in p.destinations_for(ch, "EU"))
    assert p.destinations_for("email", "EU") == ["esp-eu"] and p.destinations_for("ads", "EU") == []
    assert p.frequency_caps["email"].max == 3 and p.frequency_caps["email"].window_ms == duration_ms("7d")
    assert len(EU_EEA) == 30


def test_a_purpose_can_have_its_own_regime_in_a_region(tmp_path: Path) -> None:
    text = _edit(
        'countries = ["US"]\nregime = "opt_out"\n',
        'countries = ["US"]\nregime = "opt_out"\npurpose_regimes = { advertising = "opt_in" }\n',
    )
    p = load_policy(_write(tmp_path, text))
    assert p.regime_of("US", "marketing") == "opt_out"
    assert p.regime_of("US", "advertising") == "opt_in"
    assert p.regime_of("US") == "opt_out"


# ---------------------------------------------------------------- one test per class of error


def test_bad_toml(tmp_path: Path) -> None:
    assert "cannot be read as TOML" in _error(tmp_path, 'version = "x"\n[channels\n')


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "nope.toml")


def test_unknown_purpose_of_a_channel(tmp_path: Path) -> None:
    msg = _error(tmp_path, _edit('email = "marketing"', 'email = "newsletters"'))
    assert "channels.email needs purpose 'newsletters', which is not in purposes" in msg


def test_unknown_purpose_in_a_regime_override(tmp_path: Path) -> None:
    text = _edit('regime = "opt_out"\n', 'regime = "opt_out"\npurpose_regimes = { profiling = "opt_in" }\n')
    assert "regions.US.purpose_regimes names purpose 'profiling'" in _error(tmp_path, text)


def test_duplicate_purpose(tmp_path: Path) -> None:
    text = _edit('"analytics"]', '"analytics", "marketing"]')
    assert "purposes: purpose 'marketing' is listed twice" in _error(tmp_path, text)


def test_unknown_channel_in_a_destination(tmp_path: Path) -> None:
    text = _edit('channels = ["ads"]', 'channels = ["ads", "fax"]')
    assert "destinations.ads-us.channels names 'fax', which is not in channels" in _error(tmp_path, text)


def test_unknown_region_in_a_destination(tmp_path: Path) -> None:
    text = _edit('regions = ["US", "OTHER"]', 'regions = ["US", "APAC"]')
    assert "destinations.esp-us.regions names 'APAC'" in _error(tmp_path, text)


def test_unknown_channel_in_reach_and_caps(tmp_path: Path) -> None:
    assert "reach.fax is not in channels" in _error(
        tmp_path, _edit("[reach]\n", '[reach]\nfax = ["phone"]\n')
    )
    text = _edit("[frequency_caps]\n", '[frequency_caps]\nfax = { max = 1, window = "1d" }\n')
    assert "frequency_caps.fax is not in channels" in _error(tmp_path, text)


def test_bad_duration(tmp_path: Path) -> None:
    msg = _error(tmp_path, _edit('window = "7d"', 'window = "a week"'))
    assert "frequency_caps.email.window: 'a week' is not a duration such as '30m', '24h' or '7d'" in msg
    assert "empty window" in _error(tmp_path, _edit('window = "7d"', 'window = "0d"'))


def test_bad_cap_count(tmp_path: Path) -> None:
    assert "frequency_caps.email.max" in _error(tmp_path, _edit("max = 3", "max = 0"))


def test_duplicate_country_across_regions(tmp_path: Path) -> None:
    msg = _error(tmp_path, _edit('countries = ["GB"]', 'countries = ["GB", "IE"]'))
    assert "country IE is in regions EU and UK" in msg


def test_duplicate_country_within_a_region(tmp_path: Path) -> None:
    assert "country US is listed twice" in _error(tmp_path, _edit('["US"]', '["US", "US"]'))


def test_country_that_is_not_a_country_code(tmp_path: Path) -> None:
    msg = _error(tmp_path, _edit('["US"]', '["USA"]'))
    assert "regions.US.countries: 'USA' is not an ISO 3166-1 alpha-2 country code" in msg


def test_bad_regime(tmp_path: Path) -> None:
    msg = _error(tmp_path, _edit('regime = "opt_out"', 'regime = "maybe"'))
    assert "regions.US.regime" in msg and "opt_in" in msg and "opt_out" in msg


def test_unknown_field_is_an_error_not_ignored(tmp_path: Path) -> None:
    msg = _error(
        tmp_path, _edit('consent_merge = "most_restrictive"', 'consent_merge = "most_restrictive"\nmerge = 1')
    )
    assert "merge: Extra inputs are not permitted" in msg


def test_missing_and_empty_version(tmp_path: Path) -> None:
    assert "version: Field required" in _error(tmp_path, _edit('version = "example-2026-11"\n', ""))
    assert "version: is empty" in _error(tmp_path, _edit('"example-2026-11"', '" "'))


def test_several_errors_are_counted_on_the_one_line(tmp_path: Path) -> None:
    text = _edit('regime = "opt_out"', 'regime = "maybe"')
    text = text.replace('consent_merge = "most_restrictive"', 'consent_merge = "oldest"')
    assert "(and 1 more)" in _error(tmp_path, text)


def test_a_policy_error_is_a_config_error() -> None:
    assert issubclass(PolicyError, ConfigError)


def test_the_policy_is_immutable() -> None:
    with pytest.raises(ValueError):
        DEFAULT_POLICY.version = "x"
    assert isinstance(Policy.model_validate(_doc()), Policy)
