"""What cxstream writes: trigger CloudEvents, decision records, identity changes.

Everything here is a pure function of its inputs, so the same input replayed yields the
same bytes (ids included); no wall-clock field is in a record.
"""

from __future__ import annotations

import functools
import hashlib
import uuid

from streams.constants import CLOUDEVENTS_CONTENT_TYPE, CLOUDEVENTS_SPEC
from streams.engine.effects import Fired, RuleFailure
from streams.identity.base import Merge
from streams.intake.normalize import ms_to_iso
from streams.measure.exposures import Conversion
from streams.model import JSONDict, dumps

#: Namespace of our deterministic ids (uuid5). Never change: it would change every trigger id.
ID_NAMESPACE = uuid.UUID("5b0f7a52-3c1e-4c1d-9a55-2f1f8f0c6a11")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes

SOURCE_PREFIX = "urn:cxstream:rule:"


@functools.lru_cache(maxsize=4096)
def trigger_id(rule: str, version: int, key: str) -> str:
    """Deterministic: the same rule, version and condition key give the same id. Cached: one
    decision asks for it up to three times (its record, its activation, the profile's recent
    triggers), and a uuid5 costs ~1 µs."""
    return uuid5_text(f"{rule}|{version}|{key}")


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(ID_NAMESPACE, name))``, without the ``UUID`` object in between (~1 µs
    against ~4; ``tests/test_record_format.py`` holds the two to each other)."""
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def activation(f: Fired, policy_version: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The trigger as a CloudEvents 1.0 structured-mode JSON record: (key, value, headers)."""
    rule = f.rule
    tid = trigger_id(rule.name, rule.version, f.spec.key)
    name = f.spec.name or rule.trigger_name
    ce: JSONDict = {
        "specversion": CLOUDEVENTS_SPEC,
        "id": tid,
        "source": SOURCE_PREFIX + rule.name,
        "type": f"cx.trigger.{name}",
        "subject": f.profile_id,
        "time": ms_to_iso(f.spec.time),
        "datacontenttype": "application/json",
        "partitionkey": f.profile_id,
        "data": {
            "profileId": f.profile_id,
            "rule": {"name": rule.name, "version": rule.version},
            "trigger": name,
            "region": f.verdict.region,
            "policyVersion": policy_version,
            "channels": [
                {"channel": a.channel, "destinations": list(a.destinations)} for a in f.verdict.allowed
            ],
            "consent": {a.channel: a.basis for a in f.verdict.allowed},
            "context": f.spec.context,
        },
    }
    # Structured mode: the event is the value; the only header is its content type. No `ce-id`:
    # the Kafka binding names optional structured-mode headers `ce_*`, and the official SDK's
    # reader takes `ce-id` for an attribute and then fails to validate the event.
    headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
    return f.profile_id.encode(), dumps(ce), headers


def decision(f: Fired, policy_version: str) -> tuple[bytes, bytes]:
    """The audit record of one decision, activated or suppressed, with the reasons."""
    rule = f.rule
    tid = trigger_id(rule.name, rule.version, f.spec.key)
    # a shadow decision has an id of its own (a live one of the same version may exist), and the
    # triggerId the rule's version would have given
    rec: JSONDict = {
        "id": trigger_id(f"{rule.name}|shadow", rule.version, f.spec.key) if f.shadow else tid,
        "triggerId": tid,
        "outcome": f.outcome,
        "profileId": f.profile_id,
        "rule": {"name": rule.name, "version": rule.version},
        "type": f"cx.trigger.{f.spec.name or rule.trigger_name}",
        "time": ms_to_iso(f.spec.time),
        "purpose": rule.purpose,
        "region": f.verdict.region,
        "policyVersion": policy_version,
        "allowed": [
            {"channel": a.channel, "destinations": list(a.destinations), "basis": a.basis}
            for a in f.verdict.allowed
        ],
        "refused": [
            {"channel": r.channel, "reason": r.reason.value, "detail": r.detail} for r in f.verdict.refused
        ],
        "context": f.spec.context,
    }
    return f.profile_id.encode(), dumps(rec)


def conversion(c: Conversion) -> tuple[bytes, bytes]:
    """One conversion after a trigger (activated or held out), for ``cx.conversions``. At most
    one per trigger, so ``triggerId`` is its key for consumers that dedupe."""
    rec: JSONDict = {
        "triggerId": trigger_id(c.rule, c.version, c.key),
        "rule": c.rule,
        "group": c.group,
        "profileId": c.profile_id,
        "event": c.event,
        "messageId": c.message_id,
        "time": ms_to_iso(c.time),
        "lagSeconds": c.lag_ms / 1000,
    }
    return c.profile_id.encode(), dumps(rec)


def error_decision(f: RuleFailure, policy_version: str, region: str) -> tuple[bytes, bytes]:
    """The audit record of a decision that could not be taken: a rule failed on an event, a
    merge or (after its last attempt) a timer. Deterministic like every decision: the same
    failure on a replay gives the same id."""
    rule = f.rule
    tid = trigger_id(rule.name, rule.version, f"error|{f.method}|{f.target}")
    rec: JSONDict = {
        "id": tid,
        "triggerId": tid,
        "outcome": "error",
        "profileId": f.profile_id,
        "rule": {"name": rule.name, "version": rule.version},
        "type": f"cx.trigger.{rule.trigger_name}",
        "time": ms_to_iso(f.time),
        "purpose": rule.purpose,
        "region": region,
        "policyVersion": policy_version,
        "allowed": [],
        "refused": [],
        "context": {},
        "error": {"rule": rule.name, "method": f.method, "on": f.target, "exception": f.exception},
    }
    return f.profile_id.encode(), dumps(rec)


def identity_created(pid: str, ts: int, message_id: str) -> tuple[bytes, bytes]:
    return pid.encode(), dumps(
        {"change": "created", "profileId": pid, "time": ms_to_iso(ts), "messageId": message_id}
    )


def identity_merged(m: Merge, message_id: str) -> tuple[bytes, bytes]:
    return m.survivor.encode(), dumps(
        {
            "change": "merged",
            "profileId": m.survivor,
            "absorbed": m.absorbed,
            "linking": [str(i) for i in m.linking],
            "time": ms_to_iso(m.ts),
            "messageId": message_id,
        }
    )


def identity_erased(pid: str, erased: list[str], at: int, reason: str) -> tuple[bytes, bytes]:
    return pid.encode(), dumps(
        {"change": "erased", "profileId": pid, "erased": erased, "time": ms_to_iso(at), "reason": reason}
    )
