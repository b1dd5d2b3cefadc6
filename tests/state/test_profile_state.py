"""The per-profile state (:mod:`streams.state`): stored form, timer ids, erasure. Pure logic."""

from __future__ import annotations

import orjson
import pytest

from streams.model import dumps
from streams.state import ProfileState, TimerId, erase_profile
from streams.state.profile import STORED_KEYS

#: A state as the version before the attribute renames wrote it (every key set), byte for byte.
OLD_STORED = (
    b'{"off":41,"consent":{"marketing":[[true,1000,"segment"]]},"rules":{"cart_abandoned":{"open":{"m1":5}}},'
    b'"timers":{"cart_abandoned|m1":1800000,"inactive_45d|idle":9000},"tpay":{"cart_abandoned|m1":{"sku":"A"}},'
    b'"fails":{"inactive_45d|idle":1},"cool":{"cart_abandoned":1200},"caps":{"email":[1200,1300]},'
    b'"prefs":{"channels":[["email"],1000]},"computed":{"n":2},"recent":[{"id":"t1"}],'
    b'"reach":["email","user_id"],"absorbed":["p-old"],"pending":["p-next"],'
    b'"buffer":[{"k":"ev","pid":"p1","ev":{"type":"track"},"rx":5}],"expo":[{"rule":"cart_abandoned"}],'
    b'"country":"FR","into":"p-survivor","since":777}'
)


def test_a_state_stored_by_the_previous_version_loads_with_nothing_lost() -> None:
    s = ProfileState.from_json(OLD_STORED)
    assert s.applied_offset == 41
    assert s.merged_into == "p-survivor"
    assert s.cooldowns == {"cart_abandoned": 1200}
    assert s.timer_payloads == {"cart_abandoned|m1": {"sku": "A"}}
    assert s.timers == {"cart_abandoned|m1": 1800000, "inactive_45d|idle": 9000}
    assert s.fails == {"inactive_45d|idle": 1} and s.since == 777 and s.country == "FR"
    assert s.buffer == [{"k": "ev", "pid": "p1", "ev": {"type": "track"}, "rx": 5}]
    # every stored key was read into some attribute, and it is written back the same, byte for byte
    # (but ``oi``, newer: the index of the last record applied within a batch record, left out at 0)
    assert set(orjson.loads(OLD_STORED)) == set(STORED_KEYS.values()) - {"oi"}
    assert s.to_json() == dumps(orjson.loads(OLD_STORED))  # the writer sorts keys


def test_the_stored_form_keeps_its_compact_keys_and_leaves_out_empty_values() -> None:
    s = ProfileState(applied_offset=3, cooldowns={"r": 1}, merged_into="p2", timer_payloads={"r|t": {"a": 1}})
    assert orjson.loads(s.to_json()) == {"off": 3, "cool": {"r": 1}, "into": "p2", "tpay": {"r|t": {"a": 1}}}
    assert orjson.loads(ProfileState().to_json()) == {"off": -1}
    assert ProfileState.from_json(b"{}") == ProfileState()
    # a key no version of ours wrote (a newer version's, during a rolling downgrade) is left out
    assert ProfileState.from_json(b'{"off":2,"zz":{"a":1}}') == ProfileState(applied_offset=2)


#: a non-empty value of each stored attribute's type
_SAMPLE: dict[str, object] = {
    "applied_offset": 7,
    "applied_index": 3,
    "consent": {"marketing": [[True, 1000, "segment"]]},
    "rules": {"r": {"a": [1, {"b": None}]}},
    "timers": {"r|t": 5},
    "timer_payloads": {"r|t": {"sku": "A"}},
    "fails": {"r|t": 2},
    "cooldowns": {"r": 9},
    "caps": {"email": [1, 2]},
    "prefs": {"channels": [["email"], 1]},
    "computed": {"orders": 2},
    "recent": [{"id": "t1"}],
    "reach": ["email"],
    "absorbed": ["p-old"],
    "pending": ["p-next"],
    "buffer": [{"k": "ev"}],
    "expo": [{"rule": "r"}],
    "country": "FR",
    "merged_into": "p-survivor",
    "since": 777,
}


@pytest.mark.parametrize("attr", sorted(STORED_KEYS))
def test_each_attribute_is_stored_under_its_key_and_read_back(attr: str) -> None:
    # to_json and from_json name every attribute one by one (compiled, that is faster than a loop
    # over STORED_KEYS): each one set alone is written under its key, and nothing else but "off"
    value = _SAMPLE[attr]
    s = ProfileState(**{attr: value})  # type: ignore[arg-type]
    doc = orjson.loads(s.to_json())
    expected_off = value if attr == "applied_offset" else -1
    assert doc == {"off": expected_off, STORED_KEYS[attr]: value}
    assert ProfileState.from_json(s.to_json()) == s


def test_a_tombstone_keeps_only_its_offset_and_the_survivor() -> None:
    s = ProfileState.from_json(OLD_STORED)
    s.become_tombstone("p9")
    assert s == ProfileState(merged_into="p9", applied_offset=41)


def test_timer_id_forms() -> None:
    t = TimerId("p1", "cart_abandoned", "m|1")  # a name may hold '|' (split off last)
    assert str(t) == "p1|cart_abandoned|m|1" and t.key == "cart_abandoned|m|1"
    assert TimerId.parse(str(t)) == t
    assert TimerId.from_key("p1", t.key) == t
    for bad in ("p1", "p1|rule", "|r|n", ""):
        with pytest.raises(ValueError, match="not a timer id"):
            TimerId.parse(bad)
    with pytest.raises(ValueError, match="not a timer key"):
        TimerId.from_key("p1", "no-separator")


def test_erasure_cancels_the_timers_and_deletes_the_state_and_the_tombstones_naming_it() -> None:
    s = ProfileState(timers={"a|t": 5, "b|u": 6}, absorbed=["p2", "p3"])
    e = erase_profile("p1", s)
    assert e.cancel_timers == {"p1|a|t", "p1|b|u"}
    assert e.delete_states == ("p1", "p2", "p3")
    assert erase_profile("p4", ProfileState()).cancel_timers == frozenset()
