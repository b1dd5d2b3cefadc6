"""Consent history in event-time order, merges of consent, and zero-party preferences."""

from __future__ import annotations

from streams.consent.consent import (
    apply_preferences,
    apply_signal,
    chosen,
    consent_at,
    merge_consent,
    merge_preferences,
)
from streams.model import ConsentSignal
from streams.state import ProfileState


def _state(*statements: tuple[bool, int, str]) -> ProfileState:
    s = ProfileState()
    for granted, ts, source in statements:
        apply_signal(s, ConsentSignal("marketing", granted, ts, source))
    return s


def _reads(s: ProfileState, *times: int) -> list[bool | None]:
    out: list[bool | None] = []
    for t in times:
        e = consent_at(s, "marketing", t)
        out.append(None if e is None else bool(e[0]))
    return out


def test_the_statement_in_force_is_read_by_event_time_whatever_the_arrival_order() -> None:
    s = _state((False, 300, "segment"), (True, 100, "segment"), (True, 500, "rudderstack"))
    assert _reads(s, 99, 100, 299, 300, 499, 500) == [None, True, True, False, False, True]
    assert consent_at(s, "marketing", 600) == [True, 500, "rudderstack"]
    assert consent_at(s, "advertising", 600) is None


def test_the_same_statement_delivered_twice_is_kept_once() -> None:
    s = _state((True, 100, "segment"), (True, 100, "segment"))
    assert s.consent["marketing"] == [[True, 100, "segment"]]


def test_history_is_bounded_and_keeps_the_newest() -> None:
    s = _state(*[(i % 2 == 0, i, "segment") for i in range(50)])
    assert len(s.consent["marketing"]) == 20 and s.consent["marketing"][-1] == [False, 49, "segment"]


def test_history_survives_the_state_store_round_trip() -> None:
    s = _state((True, 100, "segment"), (False, 200, "rudderstack"))
    back = ProfileState.from_json(s.to_json())
    assert _reads(back, 150, 250) == [True, False]


# ---------------------------------------------------------------- merges


def test_most_restrictive_a_denial_on_either_side_wins_up_to_the_merge() -> None:
    a = _state((True, 100, "segment"))
    b = _state((False, 200, "rudderstack"), (True, 400, "rudderstack"))
    merge_consent(a, b, "most_restrictive")
    # 100..199: only a granted; 200..399: b denied; from 400 both granted
    assert _reads(a, 50, 150, 250, 450) == [None, True, False, True]
    assert consent_at(a, "marketing", 450) == [True, 400, "rudderstack"]


def test_most_restrictive_an_older_denial_still_wins_over_a_newer_grant_of_the_other_person() -> None:
    a = _state((False, 100, "segment"))
    b = _state((True, 300, "segment"))
    merge_consent(a, b, "most_restrictive")
    assert _reads(a, 200, 400) == [False, False]


def test_most_restrictive_a_grant_and_nothing_is_a_grant() -> None:
    a = _state((True, 100, "segment"))
    merge_consent(a, ProfileState(), "most_restrictive")
    assert _reads(a, 150) == [True]
    b = ProfileState()
    merge_consent(b, _state((True, 100, "segment")), "most_restrictive")
    assert _reads(b, 50, 150) == [None, True]


def test_after_a_merge_the_persons_latest_statement_wins() -> None:
    a = _state((False, 100, "segment"))
    b = _state((True, 50, "segment"))
    merge_consent(a, b, "most_restrictive")
    apply_signal(a, ConsentSignal("marketing", True, 500, "segment"))
    assert _reads(a, 300, 500) == [False, True]


def test_latest_interleaves_both_sides_and_a_denial_wins_a_tie() -> None:
    a = _state((False, 100, "segment"))
    b = _state((True, 300, "segment"), (True, 600, "segment"))
    c = _state((False, 600, "rudderstack"))
    merge_consent(a, b, "latest")
    assert _reads(a, 200, 400) == [False, True]
    merge_consent(a, c, "latest")
    assert _reads(a, 700) == [False]


def test_merge_keeps_every_purpose_of_either_side() -> None:
    a = ProfileState()
    apply_signal(a, ConsentSignal("analytics", True, 10, "segment"))
    b = ProfileState()
    apply_signal(b, ConsentSignal("advertising", False, 20, "segment"))
    merge_consent(a, b, "most_restrictive")
    assert set(a.consent) == {"analytics", "advertising"}


# ---------------------------------------------------------------- zero-party preferences


def test_preferred_channels_and_topics_are_kept_as_data() -> None:
    s = ProfileState()
    apply_preferences(s, {"preferred_channels": ["Email", "push", "email"], "topics": ["Loans"]}, 100)
    assert chosen(s, "channels") == ["email", "push"] and chosen(s, "topics") == ["loans"]
    assert ProfileState.from_json(s.to_json()).prefs == s.prefs


def test_an_older_preference_never_overrides_a_newer_one() -> None:
    s = ProfileState()
    apply_preferences(s, {"preferred_channels": ["sms"]}, 200)
    apply_preferences(s, {"preferred_channels": ["email"]}, 100)
    assert chosen(s, "channels") == ["sms"]


def test_null_withdraws_a_choice_and_an_empty_list_chooses_none() -> None:
    s = ProfileState()
    apply_preferences(s, {"preferred_channels": []}, 100)
    assert chosen(s, "channels") == []
    apply_preferences(s, {"preferred_channels": None}, 200)
    assert chosen(s, "channels") is None


def test_a_preference_we_cannot_read_is_left_alone() -> None:
    s = ProfileState()
    apply_preferences(s, {"preferred_channels": ["email"]}, 100)
    apply_preferences(s, {"preferred_channels": "sms", "topics": [1, 2]}, 200)
    assert chosen(s, "channels") == ["email"] and chosen(s, "topics") is None
    apply_preferences(s, {"name": "Ann"}, 300)
    assert chosen(s, "channels") == ["email"]


def test_merged_preferences_take_the_more_recent_statement() -> None:
    a, b = ProfileState(), ProfileState()
    apply_preferences(a, {"preferred_channels": ["email"], "topics": ["loans"]}, 100)
    apply_preferences(b, {"preferred_channels": ["push"]}, 200)
    apply_preferences(b, {"topics": None}, 50)
    merge_preferences(a, b)
    assert chosen(a, "channels") == ["push"] and chosen(a, "topics") == ["loans"]
    c = ProfileState()
    merge_preferences(c, ProfileState())
    assert c.prefs == {}
