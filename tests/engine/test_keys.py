"""The Redis key layout is data: what ``Keys`` builds must stay the text already in Redis."""

from __future__ import annotations

from streams.constants import Keys


def test_every_key_keeps_its_text() -> None:
    k = Keys("cx")
    assert k.state("p1") == "{cx:s:p1}"
    assert k.timers(3) == "{cx:t:3}"
    assert [k.timer_due(3), k.timer_data(3), k.timer_claims(3), k.timer_marks(3), k.timer_waiting(3)] == [
        "{cx:t:3}:due",
        "{cx:t:3}:data",
        "{cx:t:3}:claims",
        "{cx:t:3}:wm",
        "{cx:t:3}:wait",
    ]
    assert k.profile("p1") == "{cx:idg}:p:p1"
    assert [k.profile_identifiers("p1"), k.profile_traits("p1"), k.profile_channels("p1")] == [
        "{cx:idg}:p:p1:ids",
        "{cx:idg}:p:p1:traits",
        "{cx:idg}:p:p1:ch",
    ]
    assert k.profile_merges("p1") == "{cx:idg}:p:p1:merges"
    assert k.identifier("email", "a@b.c") == "{cx:idg}:i:email:a@b.c"
