"""Consent statements in the three shapes senders use, folded into :class:`~streams.model.ConsentSignal`.

=========================================  ==========================================================
where                                       shape
=========================================  ==========================================================
``context.consent.categoryPreferences``     Segment: ``{category: bool}`` on any call
``Segment Consent Preference Updated``      Segment's track event for a change; the preferences ride in
                                            ``context.consent`` (Segment's docs), some CMP wrappers put
                                            them in ``properties`` (``categoryPreferences`` or
                                            ``consent.categoryPreferences``): both are read
``context.consentManagement``               RudderStack: ``allowedConsentIds`` / ``deniedConsentIds``,
                                            lists of category ids (or ``{id: name}`` maps)
=========================================  ==========================================================

Each is checked for shape first (:func:`shape_error`): a consent statement we cannot read is
a dead letter (``wrong_type``), never a silent "no consent".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from streams.model import ConsentSignal, JSONDict

CONSENT_EVENT = "Segment Consent Preference Updated"

#: Consent category names as tools send them -> our purposes. Unknown ones are kept, snake-cased.
PURPOSE_ALIASES: dict[str, str] = {
    "advertising": "advertising",
    "ads": "advertising",
    "targeting": "advertising",
    "marketing": "marketing",
    "email": "marketing",
    "email_marketing": "marketing",
    "personalization": "personalization",
    "personalisation": "personalization",
    "functional": "personalization",
    "analytics": "analytics",
    "performance": "analytics",
    "statistics": "analytics",
}

_SNAKE_RE = re.compile(r"[^a-z0-9]+")


def snake(s: str) -> str:
    return _SNAKE_RE.sub("_", s.strip().lower()).strip("_")


def purpose_of(category: str) -> str:
    """A consent category as a tool names it -> our purpose name."""
    key = snake(category)
    return PURPOSE_ALIASES.get(key, key)


def _prefs_error(where: str, prefs: Any) -> str | None:
    if not isinstance(prefs, dict):
        return f"{where} must be an object of category -> true/false, got {type(prefs).__name__}"
    for cat, granted in prefs.items():
        if not isinstance(granted, bool):
            return f"{where} values must be true or false"  # never the category: it is input
        if not snake(cat):
            return f"{where} category names must have letters or digits"
    return None


def _ids_of(value: Any) -> list[str] | None:
    """RudderStack consent ids: a list of ids, or an ``{id: name}`` map. ``None`` if neither."""
    if isinstance(value, dict):
        value = list(value)
    if not isinstance(value, list):
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or not snake(str(v)):
            return None
        out.append(str(v))
    return out


def _event_prefs(props: JSONDict) -> tuple[str, Any] | None:
    if "categoryPreferences" in props:
        return "properties.categoryPreferences", props["categoryPreferences"]
    nested = props.get("consent")
    if isinstance(nested, dict) and "categoryPreferences" in nested:
        return "properties.consent.categoryPreferences", nested["categoryPreferences"]
    return None


def shape_error(ctx: JSONDict, props: JSONDict, is_consent_event: bool) -> str | None:
    """Why the consent fields cannot be read, or ``None`` when they can (or are absent)."""
    if "consent" in ctx:
        consent = ctx["consent"]
        if not isinstance(consent, dict):
            return f"context.consent must be an object, got {type(consent).__name__}"
        if "categoryPreferences" in consent:
            err = _prefs_error("context.consent.categoryPreferences", consent["categoryPreferences"])
            if err:
                return err
    if is_consent_event:
        found = _event_prefs(props)
        if found is not None:
            err = _prefs_error(*found)
            if err:
                return err
    if "consentManagement" in ctx:
        cm = ctx["consentManagement"]
        if not isinstance(cm, dict):
            return f"context.consentManagement must be an object, got {type(cm).__name__}"
        for field in ("allowedConsentIds", "deniedConsentIds"):
            if field in cm and _ids_of(cm[field]) is None:
                return f"context.consentManagement.{field} must be a list of category ids"
    return None


def has_preferences(ctx: JSONDict, props: JSONDict) -> bool:
    """Does a consent event say anything? (Checked after :func:`shape_error`.)"""
    consent = ctx.get("consent")
    if isinstance(consent, dict) and "categoryPreferences" in consent:
        return True
    if _event_prefs(props) is not None:
        return True
    cm = ctx.get("consentManagement")
    return isinstance(cm, dict) and any(f in cm for f in ("allowedConsentIds", "deniedConsentIds"))


def signals(ctx: JSONDict, props: JSONDict, ts: int, is_consent_event: bool) -> Iterator[ConsentSignal]:
    """Every consent statement of a message (shape already checked), at event time ``ts``.

    Within one message a later shape overrides an earlier one for the same purpose (Segment's
    context, then the consent event's properties, then RudderStack's), and a purpose that two
    categories map to is granted only if every one of them is (the most restrictive reading).
    """
    found: dict[str, tuple[bool, str]] = {}

    def put(purposes: dict[str, bool], source: str) -> None:
        for purpose, granted in purposes.items():
            found[purpose] = (granted, source)

    def fold(prefs: JSONDict) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for cat, granted in prefs.items():
            p = purpose_of(cat)
            out[p] = out.get(p, True) and bool(granted)
        return out

    consent = ctx.get("consent")
    if isinstance(consent, dict) and isinstance(consent.get("categoryPreferences"), dict):
        put(fold(consent["categoryPreferences"]), "segment")
    if is_consent_event:
        ev = _event_prefs(props)
        if ev is not None and isinstance(ev[1], dict):
            put(fold(ev[1]), "segment")
    cm = ctx.get("consentManagement")
    if isinstance(cm, dict):
        rs: dict[str, bool] = {}
        for field, granted in (("allowedConsentIds", True), ("deniedConsentIds", False)):
            for cat in _ids_of(cm.get(field)) or ():
                p = purpose_of(cat)
                rs[p] = rs.get(p, True) and granted
        put(rs, "rudderstack")
    for purpose, (granted, source) in sorted(found.items()):
        yield ConsentSignal(purpose, granted, ts, source)
