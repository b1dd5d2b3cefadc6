"""The decision step between rules and sinks: which channels may carry a trigger, and why not the others.

For each candidate channel, in this order (the first failing check is the reason):

====================================  =======================================================
reason                                refused when
====================================  =======================================================
``unknown_channel``                   the policy does not know the channel
``no_consent``                        the channel's (or the rule's) purpose is not granted at the
                                      trigger's event time, and the region's regime is opt-in
                                      (unknown means no) or it was withdrawn
``preference``                        the customer chose channels (zero-party data) and not this one
``no_reachable_identifier``           the profile has no identifier the channel can reach
``region_not_allowed``                no destination may receive data of the profile's region
``frequency_cap``                     the channel's cap for this profile is reached in its window
====================================  =======================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from streams.consent.consent import consent_at
from streams.consent.policy import Policy
from streams.engine.state import ProfileState
from streams.model import JSONDict


class Reason(StrEnum):
    UNKNOWN_CHANNEL = "unknown_channel"
    NO_CONSENT = "no_consent"
    PREFERENCE = "preference"
    NO_REACHABLE_IDENTIFIER = "no_reachable_identifier"
    REGION_NOT_ALLOWED = "region_not_allowed"
    FREQUENCY_CAP = "frequency_cap"


@dataclass(frozen=True, slots=True)
class Allowed:
    channel: str
    destinations: tuple[str, ...]
    basis: JSONDict  # {purpose: {"basis": "consent"|"opt_out_regime", "source": ..., "at": ms}}


@dataclass(frozen=True, slots=True)
class Refused:
    channel: str
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    region: str
    allowed: tuple[Allowed, ...] = ()
    refused: tuple[Refused, ...] = field(default_factory=tuple)

    @property
    def activated(self) -> bool:
        return bool(self.allowed)


def _basis(policy: Policy, state: ProfileState, purpose: str, region: str, t: int) -> JSONDict | str:
    """The basis allowing ``purpose`` at ``t``, or the refusal detail as a string."""
    entry = consent_at(state, purpose, t)
    if entry is not None:
        granted, ts, source = entry
        if granted:
            return {"basis": "consent", "source": source, "at": ts}
        return f"{purpose} consent withdrawn (source {source})"
    if policy.regime_of(region) == "opt_out":
        return {"basis": "opt_out_regime", "region": region}
    return f"no {purpose} consent, and region {region} is opt-in"


def decide(
    policy: Policy,
    state: ProfileState,
    rule_purpose: str,
    channels: tuple[str, ...],
    t: int,
    *,
    record: bool = True,
) -> Verdict:
    """Decide the channels for a trigger at event time ``t``. With ``record``, count the allowed
    ones against the frequency caps in ``state``."""
    region = policy.region_of(state.country)
    chosen = state.prefs.get("channels")
    reach = set(state.reach)
    allowed: list[Allowed] = []
    refused: list[Refused] = []
    for ch in channels:
        purpose = policy.channels.get(ch)
        if purpose is None:
            refused.append(
                Refused(ch, Reason.UNKNOWN_CHANNEL, f"policy {policy.version} has no channel {ch}")
            )
            continue
        basis: JSONDict = {}
        failed = None
        for p in dict.fromkeys((purpose, rule_purpose)):
            b = _basis(policy, state, p, region, t)
            if isinstance(b, str):
                failed = b
                break
            basis[p] = b
        if failed:
            refused.append(Refused(ch, Reason.NO_CONSENT, failed))
            continue
        if isinstance(chosen, list) and ch not in chosen:
            refused.append(Refused(ch, Reason.PREFERENCE, f"customer chose {', '.join(map(str, chosen))}"))
            continue
        need = policy.reach.get(ch)
        if need and not reach.intersection(need):
            refused.append(
                Refused(ch, Reason.NO_REACHABLE_IDENTIFIER, f"{ch} needs one of {', '.join(need)}")
            )
            continue
        dests = policy.destinations_for(ch, region)
        if not dests:
            refused.append(
                Refused(ch, Reason.REGION_NOT_ALLOWED, f"no destination for {ch} may receive {region} data")
            )
            continue
        cap = policy.frequency_caps.get(ch)
        if cap is not None:
            recent = [x for x in state.caps.get(ch, []) if t - cap.window_ms < x <= t]
            if len(recent) >= cap.max:
                refused.append(
                    Refused(
                        ch,
                        Reason.FREQUENCY_CAP,
                        f"{len(recent)} of {cap.max} {ch} activations in {cap.window}",
                    )
                )
                continue
        allowed.append(Allowed(ch, tuple(dests), basis))
    if record:
        for a in allowed:
            cap = policy.frequency_caps.get(a.channel)
            if cap is not None:
                hist = [x for x in state.caps.get(a.channel, []) if x > t - cap.window_ms]
                state.caps[a.channel] = sorted([*hist, t])[-(cap.max * 4) :]
    return Verdict(region, tuple(allowed), tuple(refused))
