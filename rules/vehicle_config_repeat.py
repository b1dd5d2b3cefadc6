"""Vehicle configuration repeat: the same configuration viewed 3 times within 14 days.

Automotive (domain notes): a shopper who comes back to the same configuration in the
model configurator for the third time in two weeks is high intent. The trigger carries
the model, configuration id, trim and view count, so a dealer or an email can pick up
that exact car. Once per configuration per 14 days: the per-rule ``cooldown_ms`` of the
engine would also silence the *other* configurations, so the rule keeps its own
per-configuration cooldown and leaves ``cooldown_ms`` at 0.

State: per configuration, the recent views ``[ts, messageId, model, trim]`` sorted by event
time and the event times it fired at. After each view the rule walks every configuration's
views in time order and fires at each view that completes a 14-day window of 3 views and
is not within 14 days of a fire (earlier or later): in-order input gives the canonical
result, a late view can only add a fire the rest of the timeline allows, never a second
one inside 14 days. The trigger key is the ``messageId`` of the view that completed the
window. A merged profile's combined views are walked at its next view.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, TriggerSpec
from streams.constants import DAY_MS
from streams.model import Event, JSONDict

VIEW = "Configuration Viewed"


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


class VehicleConfigRepeat(Rule):
    name = "vehicle_config_repeat"
    version = 1
    description = "The same vehicle configuration viewed 3 times within 14 days (once per configuration)"
    events = frozenset({VIEW})
    purpose = "marketing"
    # Dealer follow-up by phone, the configuration by email, and retargeting with that exact car.
    channels: ClassVar[tuple[str, ...]] = ("email", "call_center", "ads")

    threshold: ClassVar[int] = 3
    window_ms: ClassVar[int] = 14 * DAY_MS
    #: configurations kept per profile (the most recently viewed); a shopper compares a handful
    max_configs: ClassVar[int] = 20
    #: views kept per configuration (only the last few in a window matter)
    max_views: ClassVar[int] = 50

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        cfg = _text(event.properties.get("configuration_id"))
        if cfg is None:
            return Outcome(state)  # nothing to count a repeat against
        configs: dict[str, JSONDict] = {k: dict(v) for k, v in state.get("cfg", {}).items()}
        entry = configs.get(cfg, {"v": [], "f": []})
        views: list[list[Any]] = list(entry["v"])
        if any(v[1] == event.message_id for v in views):
            return Outcome(state)  # the same view delivered twice
        if views and event.ts <= views[-1][0] - 2 * self.window_ms:
            return Outcome(state)  # too late to matter: older than anything a window can still use
        p = event.properties
        views.append([event.ts, event.message_id, _text(p.get("model")), _text(p.get("trim"))])
        views.sort(key=lambda v: (v[0], v[1]))
        configs[cfg] = {"v": views, "f": list(entry["f"])}
        triggers: list[TriggerSpec] = []
        for name in sorted(configs):
            configs[name] = self._walk(name, configs[name], triggers)
        # keep the most recently viewed configurations
        recent = sorted(configs, key=lambda k: configs[k]["v"][-1][0] if configs[k]["v"] else 0)
        kept = {k: configs[k] for k in recent[-self.max_configs :]}
        return Outcome({"cfg": kept}, triggers)

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        configs: dict[str, JSONDict] = {k: dict(v) for k, v in survivor.get("cfg", {}).items()}
        for name, other in absorbed.get("cfg", {}).items():
            mine = configs.get(name, {"v": [], "f": []})
            seen = {v[1] for v in mine["v"]}
            views = list(mine["v"]) + [v for v in other["v"] if v[1] not in seen]
            views.sort(key=lambda v: (v[0], v[1]))
            fires = sorted(set(mine["f"]) | set(other["f"]))
            configs[name] = {"v": views, "f": fires}
        return {"cfg": configs}

    # ------------------------------------------------------------------ helpers
    def _walk(self, cfg: str, entry: JSONDict, triggers: list[TriggerSpec]) -> JSONDict:
        views: list[list[Any]] = entry["v"]
        fires: list[int] = list(entry["f"])
        for i, end in enumerate(views):
            end_ts = int(end[0])
            window = [v for v in views[: i + 1] if int(v[0]) > end_ts - self.window_ms]
            if len(window) < self.threshold:
                continue
            if any(abs(end_ts - f) < self.window_ms for f in fires):
                continue  # once per configuration per 14 days
            fires.append(end_ts)
            model = next((v[2] for v in reversed(window) if v[2]), None)
            trim = next((v[3] for v in reversed(window) if v[3]), None)
            triggers.append(
                TriggerSpec(
                    key=str(end[1]),
                    time=end_ts,
                    context={
                        "configuration_id": cfg,
                        "model": model,
                        "trim": trim,
                        "view_count": len(window),
                        "window_days": self.window_ms // DAY_MS,
                        "first_viewed_at": int(window[0][0]),
                    },
                )
            )
        newest = int(views[-1][0]) if views else 0
        views = [v for v in views if int(v[0]) > newest - 2 * self.window_ms][-self.max_views :]
        # a fire blocks views up to 14 days after it; views older than 28 days are gone
        fires = sorted(f for f in fires if f > newest - 3 * self.window_ms)
        return {"v": views, "f": fires}
