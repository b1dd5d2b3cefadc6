import pytest

from streams.exceptions import ConfigError
from streams.settings import load_settings


def test_defaults_follow_the_contract() -> None:
    s = load_settings()
    assert s.topic_raw == "cx.events.raw" and s.topic_activations == "cx.activations"
    assert s.clock == "wall" and s.topic_profiled == "cxstream-profiled"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("CXSTREAM_PARTITIONS", "lots", "CXSTREAM_PARTITIONS='lots' is invalid"),
        ("CXSTREAM_CLOCK", "evnt", "CXSTREAM_CLOCK='evnt' is invalid: Input should be 'wall' or 'event'"),
        ("CXSTREAM_KAFKA_BOOTSTRAP", "localhost", "expected host:port"),
        ("CXSTREAM_REDIS_URL", "http://u:hunter2@x", "expected a redis://"),
        ("CXSTREAM_POLICY_FILE", "/nope.toml", "existing policy file"),
        (
            "CXSTREAM_MAX_DEPTH",
            "0",
            "CXSTREAM_MAX_DEPTH='0' is invalid: Input should be greater than or equal to 1",
        ),
        ("CXSTREAM_MAX_DEPTH", "201", "Input should be less than or equal to 200"),
        ("CXSTREAM_MAX_IDENTIFIERS_PER_EVENT", "0", "Input should be greater than or equal to 1"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_setting_value_and_expectation(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    msg = str(err.value)
    assert "\n" not in msg and expected in msg and var in msg
    assert "hunter2" not in msg


def test_intake_limits_default_and_reach_the_intake(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.runtime import Runtime, Stores

    s = load_settings()
    assert (s.max_depth, s.max_identifiers_per_event) == (32, 50)
    monkeypatch.setenv("CXSTREAM_MAX_DEPTH", "12")
    monkeypatch.setenv("CXSTREAM_MAX_IDENTIFIERS_PER_EVENT", "7")
    s = load_settings()
    config = Runtime(s, Stores.memory(s)).intake.intake.config
    assert (config.max_depth, config.max_identifiers_per_event) == (12, 7)


def test_lists_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXSTREAM_RULES", "cart_abandoned, inactive_45d")
    assert load_settings().rules == ("cart_abandoned", "inactive_45d")


def test_masked_dump_hides_passwords() -> None:
    s = load_settings(redis_url="redis://:s3cret@redis:6379/0", kafka_sasl_password="pw")
    assert "s3cret" not in str(s.masked()) and "'pw'" not in str(s.masked())


def test_to_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(partitions=3, rules=("cart_abandoned",), clock="event")
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    assert load_settings() == s
