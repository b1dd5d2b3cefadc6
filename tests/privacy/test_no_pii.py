"""Privacy by construction, the "done when" of issue 12, on the real stack (Tansu broker, Redis, a
worker subprocess) with ``CXSTREAM_IDENTITY_PEPPER`` set.

Events carry emails and phone numbers in every field a sender puts them in: a ``userId`` that is an
email, an ``anonymousId`` / alias ``previousId`` that is one, traits ``email`` / ``Email`` /
``mobile`` / nested ``contact.email``, ``externalIds`` typed ``email_address`` / ``mobile_phone``, a
``context.channel`` that is an address, and dead letters whose fields hold them. Then every place the
product writes is read back with clients independent of ours (redis-py SCAN + plain reads,
confluent-kafka, HTTP): every Redis key and value, the ``/metrics`` text, the worker's log, the
records (keys, values, headers) of ``cx.identity.changes``, ``cx.decisions``, ``cx.activations`` and
the internal repartition topic, and the dead-letter headers. No raw email or phone may appear in any
spelling: as sent, lower-cased, canonical (E.164), digits only, URL-encoded.

The scan can fail: the same needles are found in the dead letters' values (kept untouched by
contract) and, without a pepper, in Redis (``tests/identity/test_pepper.py``).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import redis
from helpers import consume, produce, running_worker
from identity.redis_scan import dump

from streams.constants import Keys
from streams.identity.redis_store import RedisIdentityStore
from streams.intake import ms_to_iso
from streams.metrics import scrape_totals
from streams.redis_io import connect
from streams.settings import Settings
from streams.stack import free_port
from streams.testing import at

pytestmark = pytest.mark.stack

DAY = 86_400_000
PEPPER = "correct horse battery staple"

#: Every email and phone the events carry, as sent.
EMAILS = [
    "Carol.Diaz@example.com",
    "CAROL.DIAZ@EXAMPLE.COM",
    "carol.diaz%40example.com",
    "dan.evans@example.com",
    "erin.fox@example.org",
    "ivy.jones@example.com",
    "mailto:gus.hall@example.net",
    "Gus.Hall@Example.NET",
    "ann.lee@exämple.com",
    "ann.lee+promo@example.co.uk",
    "kim.lo@example.com",
]
PHONES = ["+1 (415) 555-0123", "020 7946 0958", "4155550177", "14155550166", "0049 30 1234567"]
#: Local parts and the snake-cased channel: distinctive pieces that only the raw values hold.
FRAGMENTS = ["carol.diaz", "dan.evans", "erin.fox", "ivy.jones", "ivy_jones", "gus.hall", "ann.lee", "kim.lo"]


def needles() -> set[str]:
    """Every spelling of every email and phone that could leak."""
    from streams.identity.pii import canonical_email, canonical_phone

    out: set[str] = set(FRAGMENTS)
    for e in EMAILS:
        c = canonical_email(e)
        assert c is not None, e
        out |= {e, e.lower(), c, quote(c, safe=""), c.split("@")[0]}
    for p in PHONES:
        c = canonical_phone(p)
        assert c is not None, p
        digits = re.sub(r"\D", "", p)
        out |= {p, c, c[1:], digits, quote(p, safe="")}
        if c.startswith("+1"):
            out.add(c[2:])  # the US national number
        if c.startswith("+44"):
            out.add("0" + c[3:])  # the UK national number
    return out


def seg(call: str, ts: int, mid: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": call, "messageId": mid, "timestamp": ms_to_iso(ts), **fields})


def events(t0: int) -> list[bytes]:
    consent = {"categoryPreferences": {"marketing": True}}
    checks = [
        seg(
            "track",
            t0 + (i + 1) * DAY,
            f"carol-check-{i}",
            userId="Carol.Diaz@example.com",  # a userId that is an email
            event="Loan Eligibility Checked",
            properties={"product": "personal_loan", "amount": 12000},
            context={"channel": "web"},
        )
        for i in range(3)
    ]
    return [
        seg(
            "identify",
            t0,
            "carol-1",
            userId="Carol.Diaz@example.com",
            traits={
                "email": "CAROL.DIAZ@EXAMPLE.COM",
                "Email": "carol.diaz%40example.com",  # URL-encoded, under another name
                "mobile": "+1 (415) 555-0123",
                "contact": {"email": "mailto:carol.diaz@example.com", "phone": "4155550177"},
                "name": "Carol",
            },
            context={"channel": "web", "location": {"country": "US"}, "consent": consent},
        ),
        *checks,
        # an anonymousId that is an email, then a known user, then the alias that links them: a merge
        seg(
            "page", t0, "dan-1", anonymousId="dan.evans@example.com", name="Home", context={"channel": "web"}
        ),
        seg("identify", t0 + 1000, "dan-2", userId="u-dan", traits={"plan": "gold"}),
        seg("alias", t0 + 2000, "dan-3", userId="u-dan", previousId="dan.evans@example.com"),
        # externalIds typed by the sender, and a channel that is an email address
        seg(
            "track",
            t0,
            "erin-1",
            anonymousId="anon-erin",
            event="Product Viewed",
            properties={"sku": "SKU-AB-1234", "price": 19.99},
            context={
                "channel": "ivy.jones@example.com",
                "externalIds": [
                    {"id": "erin.fox@example.org", "type": "email_address"},
                    {"id": "020 7946 0958", "type": "mobile_phone"},
                ],
                "traits": {"phone": "14155550166"},
            },
        ),
        # mailto: and IDN spellings, an international phone, and an email identifier that links
        seg(
            "identify",
            t0,
            "gus-1",
            anonymousId="mailto:gus.hall@example.net",
            traits={"email": "Gus.Hall@Example.NET", "fax": "0049 30 1234567", "alt": "ann.lee@exämple.com"},
        ),
        seg(
            "identify",
            t0,
            "gus-2",
            userId="u-gus",
            context={"traits": {"email": "gus.hall@example.net", "promo": "ann.lee+promo@example.co.uk"}},
        ),
        # dead letters: personal data in the fields that break a rule
        seg("track", t0, "dl-1", userId="kim.lo@example.com"),  # missing event name
        orjson.dumps({"type": "kim.lo@example.com", "messageId": "dl-2", "userId": "u-k"}),
        seg("identify", t0, "dl-3", userId="u-k", context={"channel": 4155550177}),
        orjson.dumps(
            {"type": "identify", "messageId": "dl-4", "userId": "u-k", "timestamp": "kim.lo@example.com"}
        ),
        seg(
            "track",
            t0,
            "dl-5",
            userId="u-k",
            event="Segment Consent Preference Updated",
            context={"consent": {"categoryPreferences": {"kim.lo@example.com": "yes"}}},
        ),
        seg("identify", t0, "dl-6", userId={"email": "kim.lo@example.com"}),
        b'{"type":"identify","messageId":"dl-7","traits":{"email":"kim.lo@example.com"',
    ]


def scan(where: str, text: str, found: list[str], pins: set[str]) -> None:
    low = text.lower()
    for n in pins:
        if n.lower() in low:
            at_ = low.index(n.lower())
            found.append(f"{where}: {n!r} in ...{text[max(0, at_ - 60) : at_ + 60]!r}...")


def records_text(msgs: list[Any]) -> list[tuple[str, str]]:
    out = []
    for m in msgs:
        key = (m.key() or b"").decode(errors="replace")
        headers = " ".join(f"{k}={(v or b'').decode(errors='replace')}" for k, v in m.headers() or [])
        out.append((f"{m.topic()}/{m.partition()}/{m.offset()}", f"{key} {m.value().decode()} {headers}"))
    return out


def run_and_scan(s: Settings, tmp_path: Path) -> list[str]:
    """Run a worker over :func:`events`, then scan everything it wrote; the leaks found."""
    port = s.metrics_port
    sent = events(at("2026-03-02T09:00:00Z"))
    pins = needles()
    log = tmp_path / "worker.log"
    url = f"http://127.0.0.1:{port}/metrics"
    with running_worker(s, log) as proc:
        # keyed by person (the messageId's prefix): one partition each, so the alias comes last
        produce(s, s.topic_raw, [(re.findall(rb'"messageId":"([a-z]+)-', v)[0], v) for v in sent])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                t = scrape_totals(url)
                if t["events_in"] + t["deadletter"] == len(sent) and t["lag"] == 0:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"the worker did not take every message:\n{log.read_text()[-3000:]}")
        activations = consume(s, s.topic_activations, want=1, timeout=60, idle=2)
        with urllib.request.urlopen(url, timeout=5) as r:
            scrape = r.read().decode()
        time.sleep(1)

    changes = consume(s, s.topic_identity_changes, want=5, timeout=30, idle=2)
    decisions = consume(s, s.topic_decisions, want=1, timeout=30, idle=1)
    profiled = consume(s, s.topic_profiled, want=1, timeout=30, idle=1)
    dead = consume(s, s.topic_deadletter, want=7, timeout=30, idle=1)

    # the run did what the scan relies on: a trigger, a merge, seven dead letters
    assert len(activations) == 1 and decisions, "Carol's three checks fire once"
    kinds = [orjson.loads(m.value())["change"] for m in changes]
    assert "merged" in kinds and kinds.count("created") >= 4, kinds
    assert len(dead) == 7, [dict(m.headers() or []) for m in dead]
    assert 'channel="other"' in scrape, "the email-shaped channel counts as other"

    found: list[str] = []
    raw = redis.Redis.from_url(s.redis_url.get_secret_value())
    everything = dump(raw, f"*{s.redis_prefix}*")
    assert len(everything) > 20, "the scan reads the run's keys"
    for key, vals in everything.items():
        scan(f"redis {key}", " ".join([key, *vals]), found, pins)
    scan("/metrics", scrape, found, pins)
    scan("worker log", log.read_text(errors="replace"), found, pins)
    for where, text in records_text(changes + decisions + activations + profiled):
        scan(where, text, found, pins)
    for m in dead:
        headers = " ".join(f"{k}={(v or b'').decode(errors='replace')}" for k, v in m.headers() or [])
        scan(f"dead-letter headers {m.offset()}", headers, found, pins)

    # the needles are real: the dead letters keep the bytes as received (contract), needles and all
    kept: list[str] = []
    for m in dead:
        scan("dead-letter value", m.value().decode(errors="replace"), kept, pins)
    assert kept
    return found


def test_no_raw_email_or_phone_anywhere(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = make_settings(rules=("loan_eligibility_repeat",), identity_pepper=PEPPER, metrics_port=free_port())
    monkeypatch.setenv("CXSTREAM_LOG_LEVEL", "debug")  # the most the worker (faust, aiokafka) ever logs
    topics(s)
    found = run_and_scan(s, tmp_path)
    assert not found, "\n".join(sorted(found))

    # and the people are still found by what they sent, in any spelling
    async def lookups() -> dict[str, str | None]:
        from streams.profiles import parse_ref

        client = connect(s.redis_url.get_secret_value())
        store = RedisIdentityStore(client, Keys(s.redis_prefix))
        try:
            refs = {
                "carol": "user_id:carol.diaz%40example.com",
                "carol_email": "email:Carol.Diaz@Example.com",
                "dan": "user_id:u-dan",
                "dan_anon": "anonymous_id:dan.evans@example.com",
                "erin": "email_address:mailto:erin.fox@example.org",
                "erin_phone": "mobile_phone:+44 20 7946 0958",
                "gus": "user_id:u-gus",
                "gus_anon": "anonymous_id:gus.hall@example.net",
            }
            return {k: await store.lookup(parse_ref(s, v)) for k, v in refs.items()}
        finally:
            await client.aclose()

    pids = asyncio.run(lookups())
    assert all(pids.values()), pids
    assert pids["carol"] == pids["carol_email"]
    assert pids["dan"] == pids["dan_anon"], "the alias merged them"
    assert pids["erin"] == pids["erin_phone"]
    assert pids["gus"] == pids["gus_anon"], "mailto: and the email identifier are one person"


def test_without_a_pepper_the_scan_finds_them(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    """The scan can fail: without a pepper, Redis, the changes topic and the repartition topic hold
    the identifiers as sent (normalized)."""
    s = make_settings(rules=("loan_eligibility_repeat",), metrics_port=free_port())
    topics(s)
    found = run_and_scan(s, tmp_path)
    assert any(f.startswith("redis ") for f in found), found
    assert any(s.topic_identity_changes in f for f in found), found


def test_profile_show_says_which_values_are_hashed(make_settings: Callable[..., Settings]) -> None:
    """``profile show`` marks hashed identifiers and traits; the query is the only raw value echoed."""
    from click.testing import CliRunner
    from identity.test_erasure import close, pipeline_over_redis

    from streams.cli import main

    s = make_settings(rules=("cart_abandoned",), identity_pepper=PEPPER)

    async def load() -> None:
        pipe, stores = pipeline_over_redis(s)
        try:
            await pipe.feed(events(at("2026-03-02T09:00:00Z"))[:1])
        finally:
            await close(stores)

    asyncio.run(load())
    out = CliRunner().invoke(main, ["profile", "show", "user_id:Carol.Diaz@example.com"], env=s.to_env())
    assert out.exit_code == 0, out.output
    body = "\n".join(out.output.splitlines()[1:])
    assert "keyed hash" in body and "h:" in body
    assert "Mobile" not in body and "mobile" in body and "keyed hash: the raw value is not stored" in body
    found: list[str] = []
    scan("profile show", body, found, needles())
    assert not found, found
