"""Open exposures: triggers (activated or held out) waiting for the person to convert.

Kept in the profile's state (``ProfileState.expo``), so they are as durable as the rest of it:
saved with the batch that opened or closed them, skipped with it on a redelivery
(``ProfileState.applied_offset``), handed to the survivor on a merge. Called by the engine
(:mod:`streams.engine.runner`): :func:`open_exposure` when a trigger is decided,
:func:`convert` for every event before the rules see it, :func:`merged` on a merge. None of
them does I/O or raises on well-formed state.

One exposure converts at most once: on the person's first conversion event (a track event
named in the rule's ``conversion_events``) whose event time is after the trigger's and within
``conversion_window_days`` of it. A conversion event outside the window does not count; the
exposure is dropped once an event a day past its window arrives (the day leaves room for
events that arrive out of order). One event can convert several exposures (of different
triggers): each trigger's conversion is its own record.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.measure.config import DAY_MS, Measurement
from streams.model import Event, JSONDict

#: Most open exposures one profile keeps; past it the oldest is dropped (unconverted). A
#: window of 7 days and a trigger a day is 7; 100 only binds a rule that fires in bursts.
MAX_EXPOSURES = 100
#: An exposure stays this long past its window, for conversion events that arrive late but
#: happened inside the window (out-of-order delivery).
GRACE_MS = DAY_MS


@dataclass(frozen=True, slots=True)
class Conversion:
    """A person converted after a trigger. ``rule``/``version``/``key`` name the trigger (its id
    is derived from them, as for the trigger itself)."""

    rule: str
    version: int
    key: str
    group: str
    profile_id: str
    event: str
    message_id: str
    time: int
    trigger_time: int

    @property
    def lag_ms(self) -> int:
        return self.time - self.trigger_time


def open_exposure(
    expo: list[JSONDict], *, rule: str, version: int, key: str, group: str, at: int, window_ms: int
) -> None:
    """Record a decided trigger (activated or held out) as waiting for a conversion."""
    for e in expo:
        if e["r"] == rule and e["v"] == version and e["k"] == key:
            return  # the same trigger decided again (a timer re-fired after a failed attempt)
    expo.append({"r": rule, "v": version, "k": key, "g": group, "at": at, "until": at + window_ms})
    expo.sort(key=lambda e: (e["at"], e["r"], e["k"]))
    del expo[:-MAX_EXPOSURES]


def convert(expo: list[JSONDict], pid: str, event: Event, measurement: Measurement) -> list[Conversion]:
    """The conversions ``event`` makes, in exposure order; converted and expired exposures leave
    ``expo`` (in place)."""
    out: list[Conversion] = []
    keep: list[JSONDict] = []
    for e in expo:
        if event.ts > e["until"] + GRACE_MS:
            continue  # its window is long over: it will not convert any more
        conv = measurement.conversions(e["r"])
        if (
            conv is not None
            and event.call == "track"
            and event.name in conv[0]
            and e["at"] < event.ts <= e["until"]
        ):
            out.append(
                Conversion(
                    e["r"], e["v"], e["k"], e["g"], pid, event.name, event.message_id, event.ts, e["at"]
                )
            )
            continue
        keep.append(e)
    expo[:] = keep
    return out


def merged(survivor: list[JSONDict], absorbed: list[JSONDict]) -> list[JSONDict]:
    """Both profiles' open exposures, each with the group it was opened in; a trigger both
    hold (a hand-off seen twice) is kept once."""
    out = list(survivor)
    seen = {(e["r"], e["v"], e["k"]) for e in survivor}
    out += [e for e in absorbed if (e["r"], e["v"], e["k"]) not in seen]
    out.sort(key=lambda e: (e["at"], e["r"], e["k"]))
    return out[-MAX_EXPOSURES:]
