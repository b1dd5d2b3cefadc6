"""Vehicle configuration repeat: the same configuration viewed 3 times within 14 days.

Automotive (domain notes): a shopper who comes back to the same configuration in the
model configurator for the third time in two weeks is high intent. The trigger carries
the model, configuration id, trim and view count, so a dealer or an email can pick up
that exact car. Once per configuration per 14 days: the per-rule ``cooldown_ms`` of the
engine would also silence the *other* configurations, so the rule keeps its own
per-configuration cooldown and leaves ``cooldown_ms`` at 0.

State: ``{"views": {configuration: [{"ts", "id", "model", "trim"}, ...]}, "fired":
{configuration: [ms, ...]}}``: per configuration a :class:`~rules.kit.Timeline` of its
recent views (deduped by ``messageId``) and, in one :class:`~rules.kit.Cooldown`, the event
times it fired at. A state stored in the older shape (``{"cfg": {configuration: {"v":
[[ts, messageId, model, trim], ...], "f": [ms, ...]}}}``) is read as the new one. After each
view the rule walks every configuration's views in time order and fires at each view that
completes a 14-day window of 3 views and is not within 14 days of a fire (earlier or
later): in-order input gives the canonical result, a late view can only add a fire the
rest of the timeline allows, never a second one inside 14 days. The trigger key is the
``messageId`` of the view that completed the window. A merged profile's combined views are
walked at its next view.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, TriggerSpec
from rules.kit import Cooldown, Timeline, in_window, text
from streams.constants import DAY_MS
from streams.model import Event, JSONDict

VIEW = "Configuration Viewed"
#: positions of a view stored in the older, positional shape
_LEGACY = ("ts", "id", "model", "trim")


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
        cfg = text(event.properties.get("configuration_id"))
        if cfg is None:
            return Outcome(state)  # nothing to count a repeat against
        views, fired = self._load(state)
        timeline = views.get(cfg, Timeline())
        if event.message_id in timeline:
            return Outcome(state)  # the same view delivered twice
        newest = timeline.newest
        if newest is not None and event.ts <= newest - 2 * self.window_ms:
            return Outcome(state)  # too late to matter: older than anything a window can still use
        p = event.properties
        timeline.add_event(event, model=text(p.get("model")), trim=text(p.get("trim")))
        views[cfg] = timeline
        triggers: list[TriggerSpec] = []
        for name in sorted(views):
            self._walk(name, views[name], fired, triggers)
        # keep the most recently viewed configurations
        recent = sorted(views, key=lambda k: views[k].newest or 0)[-self.max_configs :]
        return Outcome(self._dump({k: views[k] for k in recent}, fired), triggers)

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        views, fired = self._load(survivor)
        other_views, other_fired = self._load(absorbed)
        for name, other in other_views.items():
            views[name] = views.get(name, Timeline()).merged(other)
        return self._dump(views, fired.merged(other_fired))

    # ------------------------------------------------------------------ helpers
    def _load(self, state: JSONDict) -> tuple[dict[str, Timeline], Cooldown]:
        """The views per configuration and the fires, from either stored shape."""
        if "cfg" in state:  # the older shape: {"cfg": {name: {"v": [[ts, id, model, trim]], "f": [ms]}}}
            old: dict[str, Any] = state["cfg"]
            views = {k: Timeline(v.get("v"), legacy=_LEGACY) for k, v in old.items()}
            return views, Cooldown(self.window_ms, {k: v.get("f", []) for k, v in old.items()})
        views = {k: Timeline(v) for k, v in state.get("views", {}).items()}
        return views, Cooldown(self.window_ms, state.get("fired"))

    def _dump(self, views: dict[str, Timeline], fired: Cooldown) -> JSONDict:
        kept = {k: v for k, v in fired.dump().items() if k in views}
        out: JSONDict = {"views": {k: v.dump() for k, v in views.items()}}
        return {**out, "fired": kept} if kept else out

    def _walk(self, cfg: str, views: Timeline, fired: Cooldown, triggers: list[TriggerSpec]) -> None:
        entries = list(views)
        for i, end in enumerate(entries):
            end_ts = int(end["ts"])
            window = in_window(entries[: i + 1], end_ts, self.window_ms)
            if len(window) < self.threshold:
                continue
            if fired.blocks(cfg, end_ts):
                continue  # once per configuration per 14 days
            fired.note(cfg, end_ts)
            model = next((v["model"] for v in reversed(window) if v.get("model")), None)
            trim = next((v["trim"] for v in reversed(window) if v.get("trim")), None)
            triggers.append(
                TriggerSpec(
                    key=str(end["id"]),
                    time=end_ts,
                    context={
                        "configuration_id": cfg,
                        "model": model,
                        "trim": trim,
                        "view_count": len(window),
                        "window_days": self.window_ms // DAY_MS,
                        "first_viewed_at": int(window[0]["ts"]),
                    },
                )
            )
        newest = views.newest or 0
        views.prune(newest - 2 * self.window_ms)
        views.last(self.max_views)
        # a fire blocks views up to 14 days after it; views older than 28 days are gone
        kept = [f for f in fired.fired.get(cfg, []) if f > newest - 3 * self.window_ms]
        if kept:
            fired.fired[cfg] = kept
        else:
            fired.fired.pop(cfg, None)
