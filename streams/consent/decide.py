"""The decision step between rules and sinks: which channels may carry a trigger, and why not the others.

For each candidate channel, in this order (the first failing check is the reason):

====================================  =======================================================
reason                                refused when
====================================  =======================================================
``unknown_channel``                   the policy does not know the channel
``no_consent``                        the channel's (or the rule's) purpose is not granted at the
                                      trigger's event time: it was withdrawn, or nothing was said
                                      and the regime for that purpose in the profile's region is
                                      opt-in (unknown means no; opt-out: unknown means yes)
``preference``                        the customer chose channels (``traits.preferred_channels``)
                                      and not this one, or chose topics (``traits.topics``) and
                                      not the rule's ``topic``
``no_reachable_identifier``           the profile has no identifier the channel can reach
``region_not_allowed``                no destination may receive data of the profile's region
                                      (residency)
``frequency_cap``                     the channel already carried ``max`` activations for this
                                      profile within one ``window`` of the trigger's time
====================================  =======================================================

Consent is read at the trigger's event time, so a timer that fires (a cart abandoned 30
minutes ago) is decided on the consent in force then, not when the cart was opened. Every
verdict, allowed or not, becomes a decision record; one with an allowed channel also becomes
an activation carrying the consent basis of each channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from streams.consent.consent import chosen, consent_at
from streams.consent.policy import Policy
from streams.frozen import fast_init
from streams.model import JSONDict
from streams.state import ProfileState


class Reason(StrEnum):
    UNKNOWN_CHANNEL = "unknown_channel"
    NO_CONSENT = "no_consent"
    PREFERENCE = "preference"
    NO_REACHABLE_IDENTIFIER = "no_reachable_identifier"
    REGION_NOT_ALLOWED = "region_not_allowed"
    FREQUENCY_CAP = "frequency_cap"


@dataclass(frozen=True, slots=True, init=False)
class Allowed:
    channel: str
    destinations: tuple[str, ...]
    basis: JSONDict  # {purpose: {"basis": "consent"|"opt_out_regime", "source": ..., "at": ms}}

    def __init__(self, channel: str, destinations: tuple[str, ...], basis: JSONDict) -> None:
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "destinations", destinations)
        object.__setattr__(self, "basis", basis)


@dataclass(frozen=True, slots=True, init=False)
class Refused:
    channel: str
    reason: Reason
    detail: str

    def __init__(self, channel: str, reason: Reason, detail: str) -> None:
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "detail", detail)


@dataclass(frozen=True, slots=True, init=False)
class Verdict:
    region: str
    allowed: tuple[Allowed, ...] = ()
    refused: tuple[Refused, ...] = field(default_factory=tuple)

    def __init__(
        self,
        region: str,
        allowed: tuple[Allowed, ...] = (),
        refused: tuple[Refused, ...] | None = None,
    ) -> None:
        object.__setattr__(self, "region", region)
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "refused", () if refused is None else refused)

    @property
    def activated(self) -> bool:
        return bool(self.allowed)


class _Lookups:
    """What :func:`decide` reads from a policy for every fired trigger, made once per policy.

    The policy is an interpreted pydantic model: its methods (a region by scanning every
    region's countries, destinations by scanning every destination, a cap's window parsed from
    its text on each read) and attribute reads cost several microseconds per trigger.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.version = policy.version
        self.channels: dict[str, str] = dict(policy.channels)
        self.reach: dict[str, tuple[str, ...]] = dict(policy.reach)
        self.default_region = policy.default_region
        self.region_by_country: dict[str, str] = {}
        for name, r in policy.regions.items():
            for c in r.countries:
                self.region_by_country.setdefault(c, name)
        regions = [*policy.regions, policy.default_region]
        self.destinations: dict[tuple[str, str], tuple[str, ...]] = {
            (ch, region): tuple(policy.destinations_for(ch, region))
            for ch in self.channels
            for region in regions
        }
        self.regimes: dict[tuple[str, str], str] = {
            (region, p): policy.regime_of(region, p) for region in regions for p in policy.purposes
        }
        #: channel -> (max, window in ms)
        self.caps: dict[str, tuple[int, int]] = {
            ch: (cap.max, cap.window_ms) for ch, cap in policy.frequency_caps.items()
        }

    def region_of(self, country: str | None) -> str:
        if country:
            return self.region_by_country.get(country, self.default_region)
        return self.default_region

    def dests(self, channel: str, region: str) -> tuple[str, ...]:
        found = self.destinations.get((channel, region))
        return found if found is not None else tuple(self.policy.destinations_for(channel, region))

    def regime(self, region: str, purpose: str) -> str:
        found = self.regimes.get((region, purpose))
        return found if found is not None else self.policy.regime_of(region, purpose)


#: id(policy) -> its lookups (a policy is frozen; the lookups hold it, so its id stays its own)
_LOOKUPS: dict[int, _Lookups] = {}


def _lookups(policy: Policy) -> _Lookups:
    lk = _LOOKUPS.get(id(policy))
    if lk is None or lk.policy is not policy:
        if len(_LOOKUPS) >= 64:  # tests make many policies; a worker has one
            _LOOKUPS.clear()
        lk = _LOOKUPS[id(policy)] = _Lookups(policy)
    return lk


def _basis(lk: _Lookups, state: ProfileState, purpose: str, region: str, t: int) -> JSONDict | str:
    """The basis allowing ``purpose`` at ``t``, or the refusal detail as a string."""
    entry = consent_at(state, purpose, t)
    if entry is not None:
        granted, ts, source = entry
        if granted:
            return {"basis": "consent", "source": source, "at": ts}
        return f"{purpose} consent withdrawn (source {source})"
    if lk.regime(region, purpose) == "opt_out":
        return {"basis": "opt_out_regime", "region": region}
    return f"no {purpose} consent, and {purpose} is opt-in in region {region}"


def _in_cap_window(stamps: list[int], t: int, window: int) -> int:
    """The most earlier activations that share one ``window`` with a new one at ``t``.

    Not just ``(t - window, t]``: a trigger decided late (an out-of-order event) must not
    squeeze a fourth activation between three later ones either.
    """
    near = sorted(x for x in stamps if t - window < x < t + window)
    best = 0
    for start in [x for x in near if x <= t] + [t]:
        best = max(best, sum(1 for x in near if start <= x < start + window))
    return best


def decide(
    policy: Policy,
    state: ProfileState,
    rule_purpose: str,
    channels: tuple[str, ...],
    t: int,
    *,
    topic: str | None = None,
    record: bool = True,
) -> Verdict:
    """Decide the channels for a trigger at event time ``t``. With ``record``, count the allowed
    ones against the frequency caps in ``state``."""
    lk = _lookups(policy)
    region = lk.region_of(state.country)
    chosen_channels = chosen(state, "channels")
    chosen_topics = chosen(state, "topics")
    reach = set(state.reach)
    allowed: list[Allowed] = []
    refused: list[Refused] = []
    for ch in channels:
        purpose = lk.channels.get(ch)
        if purpose is None:
            refused.append(Refused(ch, Reason.UNKNOWN_CHANNEL, f"policy {lk.version} has no channel {ch}"))
            continue
        basis: JSONDict = {}
        failed = None
        for p in dict.fromkeys((purpose, rule_purpose)):
            b = _basis(lk, state, p, region, t)
            if isinstance(b, str):
                failed = b
                break
            basis[p] = b
        if failed:
            refused.append(Refused(ch, Reason.NO_CONSENT, failed))
            continue
        if chosen_channels is not None and ch not in chosen_channels:
            named = ", ".join(chosen_channels) or "none"
            refused.append(Refused(ch, Reason.PREFERENCE, f"customer chose channels: {named}"))
            continue
        if topic and chosen_topics is not None and topic not in chosen_topics:
            named = ", ".join(chosen_topics) or "none"
            refused.append(Refused(ch, Reason.PREFERENCE, f"customer chose topics: {named}; not {topic}"))
            continue
        need = lk.reach.get(ch)
        if need and not reach.intersection(need):
            refused.append(
                Refused(ch, Reason.NO_REACHABLE_IDENTIFIER, f"{ch} needs one of {', '.join(need)}")
            )
            continue
        dests = lk.dests(ch, region)
        if not dests:
            refused.append(
                Refused(ch, Reason.REGION_NOT_ALLOWED, f"no destination for {ch} may receive {region} data")
            )
            continue
        cap = lk.caps.get(ch)
        if cap is not None:
            used = _in_cap_window(state.caps.get(ch, []), t, cap[1])
            if used >= cap[0]:
                window = policy.frequency_caps[ch].window
                refused.append(
                    Refused(ch, Reason.FREQUENCY_CAP, f"{used} of {cap[0]} {ch} activations in {window}")
                )
                continue
        allowed.append(Allowed(ch, dests, basis))
    if record:
        for a in allowed:
            cap = lk.caps.get(a.channel)
            if cap is not None:
                stamps = sorted([*state.caps.get(a.channel, []), t])
                # what no future window can reach any more falls off; 4x max bounds a burst
                keep = [x for x in stamps if x > stamps[-1] - 2 * cap[1]]
                state.caps[a.channel] = keep[-(cap[0] * 4) :]
    return Verdict(region, tuple(allowed), tuple(refused))


# interpreted (no compiler here): faster __init__s; compiled, they are left as written
fast_init(Allowed)
fast_init(Refused)
fast_init(Verdict)
