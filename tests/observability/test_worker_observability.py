"""A real worker, scraped by a real Prometheus during a replay of the demo journeys.

One worker run for the module (the demo set plus a few messages full of personal data, some
of them broken), then: the scrape passes ``promtool check metrics``; every Grafana panel's
query returns data from Prometheus; the alert rules evaluate cleanly on real series; and the
worker's log (at debug, the most it ever writes) holds no email or phone number of the input.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import fresh_settings, running_worker
from observability.prom import DASHBOARD, PROM_DIR, Prometheus, prometheus, promtool

from streams.demo import DEMO_FILE
from streams.kafka import create_topics
from streams.replay import replay_file
from streams.settings import Settings
from streams.stack import LocalStack, free_port

pytestmark = pytest.mark.stack

#: Grafana's variables, as a dashboard over the last 10 minutes of one job would set them.
GRAFANA_VARS = {
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$__range": "10m",
    "$job": ".+",
    "$instance": ".+",
}

#: Personal data that must never reach a log line, in the forms it arrives in and is normalized to.
PII_MESSAGES: list[bytes] = [
    orjson.dumps(
        {
            "type": "identify",
            "messageId": "pii-1",
            "userId": "usr_pii_1",
            "timestamp": "2026-01-06T09:00:00Z",
            "traits": {
                "email": "Zelda.Quixote@PII-Test.example",
                "phone": "+44 7700 900123",
                "first_name": "Zelda",
                "last_name": "Quixotewright",
            },
            "context": {"channel": "web", "location": {"country": "GB"}},
        }
    ),
    orjson.dumps(
        {
            "type": "track",
            "event": "Product Added",
            "messageId": "pii-2",
            "anonymousId": "anon-pii-2",
            "timestamp": "2026-01-06T09:01:00Z",
            "properties": {"product_id": "p-1001", "price": 22.99, "currency": "EUR"},
            "context": {
                "channel": "app",
                "traits": {"email": "marco.vanterpool@pii-test.example", "phone": "(206) 555-0187"},
            },
        }
    ),
    # broken JSON that quotes an email: a dead letter
    b'{"type":"identify","messageId":"pii-3","traits":{"email":"broken.json@pii-test.example"',
    # a track call without its event name: invalid, a dead letter
    orjson.dumps(
        {
            "type": "track",
            "messageId": "pii-4",
            "userId": "usr_pii_4",
            "timestamp": "2026-01-06T09:02:00Z",
            "context": {"traits": {"email": "no.event@pii-test.example", "phone": "+1 415 555 0142"}},
        }
    ),
    # wrong types around personal data: a dead letter whose detail must not quote it
    orjson.dumps(
        {
            "type": "identify",
            "messageId": "pii-5",
            "userId": "usr_pii_5",
            "timestamp": "not a time +14155550199",
            "traits": {"email": ["list.email@pii-test.example"], "phone": 4155550123},
        }
    ),
    # the right to be forgotten, for the first person
    orjson.dumps(
        {
            "type": "track",
            "event": "Profile Erasure Requested",
            "messageId": "pii-6",
            "userId": "usr_pii_1",
            "timestamp": "2026-01-06T09:03:00Z",
            "traits": {"email": "zelda.quixote@pii-test.example"},
        }
    ),
    # an erasure request for somebody we never saw: logged (with the batch's context), by message id
    orjson.dumps(
        {
            "type": "track",
            "event": "Profile Erasure Requested",
            "messageId": "pii-7",
            "anonymousId": "anon-pii-7",
            "timestamp": "2026-01-06T09:04:00Z",
            "traits": {"email": "ghost.person@pii-test.example"},
        }
    ),
]
#: what the input's personal data is normalized to (lower-case emails, E.164 phones), plus names
PII_EXTRA = [
    "zelda.quixote@pii-test.example",
    "+447700900123",
    "+12065550187",
    "+14155550142",
    "4155550123",
    "+14155550199",
    "Quixotewright",
    "Vanterpool",
]
EMAIL_RE = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PHONE_FIELD_RE = re.compile(rb'"phone"\s*:\s*"?([^",}]+)')


def personal_data(raw: bytes) -> set[str]:
    """Every email and phone of the input, as it arrives."""
    found = {m.decode() for m in EMAIL_RE.findall(raw)}
    found |= {m.decode().strip() for m in PHONE_FIELD_RE.findall(raw)}
    return found | set(PII_EXTRA)


@dataclass
class Observed:
    settings: Settings
    prom: Prometheus
    metrics_url: str
    log: Path
    produced: int
    pii: set[str]
    scrape: bytes = b""


def totals(url: str) -> dict[str, float]:
    from streams.metrics import scrape_totals

    return scrape_totals(url)


def wait_for(what: str, check: Any, timeout: float, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"worker exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}"
            )
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def observed(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    workdir = tmp_path_factory.mktemp("observability")
    port = free_port()
    settings = fresh_settings(
        stack,
        metrics_port=port,
        clock="event",  # old demo data: timers fire on the replay's own time
        watermark_idle_timeout=1.0,
    )
    asyncio.run(create_topics(settings))
    journeys = workdir / "journeys.jsonl"
    raw = DEMO_FILE.read_bytes().rstrip(b"\n") + b"\n" + b"\n".join(PII_MESSAGES) + b"\n"
    journeys.write_bytes(raw)
    produced = sum(1 for line in raw.splitlines() if line.strip())
    log = workdir / "worker.log"
    url = f"http://127.0.0.1:{port}/metrics"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXSTREAM_LOG_LEVEL", "debug")  # the most the worker (and faust, aiokafka) ever log
        with (
            prometheus(workdir, [f"127.0.0.1:{port}"], [PROM_DIR / "alerts.yml"]) as prom,
            running_worker(settings, log) as proc,
        ):

            def scraped() -> bool:
                res = prom.query('up{job="cxstream"} == 1')["result"]
                return bool(res)

            wait_for("Prometheus to scrape the worker", scraped, 60, proc, log)
            start = time.monotonic()
            n = asyncio.run(replay_file(settings, journeys))
            assert n == produced

            def processed() -> bool:
                t = totals(url)
                return t["events_in"] + t["deadletter"] == produced and t["lag"] == 0

            wait_for("the worker to take every message", processed, 120, proc, log)

            def in_prometheus() -> bool:
                res = prom.query("sum(cxstream_events_in_total) + sum(cxstream_deadletter_total)")["result"]
                return bool(res) and float(res[0]["value"][1]) == produced

            wait_for("Prometheus to see it all", in_prometheus, 30, proc, log)
            time.sleep(3)  # a few more scrapes: the timers that fire at the end, lag back to 0
            print(f"\nreplay of {produced} messages processed and scraped in {time.monotonic() - start:.1f}s")
            with urllib.request.urlopen(url, timeout=5) as r:
                scrape = r.read()
            yield Observed(settings, prom, url, log, produced, personal_data(raw), scrape)


def test_the_scrape_passes_promtool_check_metrics(observed: Observed) -> None:
    res = promtool("check", "metrics", stdin=observed.scrape)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr
    series = [line for line in observed.scrape.decode().splitlines() if line and not line.startswith("#")]
    ours = [s for s in series if s.startswith("cxstream_")]
    print(f"\nscrape: {len(observed.scrape)} bytes, {len(series)} series ({len(ours)} cxstream_)")
    # no per-person label: no profile id, message id, user id or email in any label value
    text = observed.scrape.decode()
    for label_set in re.findall(r"\{([^}]*)\}", text):
        for value in re.findall(r'="([^"]*)"', label_set):
            assert not value.startswith(("p_", "demo-", "pii-", "usr_")) and "@" not in value, label_set


def test_the_program_health_measures_are_in_the_scrape(observed: Observed) -> None:
    text = observed.scrape.decode()

    def value(series: str) -> float:
        m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        assert m, f"{series} not in the scrape"
        return float(m.group(1))

    known = value('cxstream_events_resolved_total{person="known"}')
    anonymous = value('cxstream_events_resolved_total{person="anonymous"}')
    assert known > 0 and anonymous > 0
    assert value('cxstream_decision_consent_total{statement="explicit"}') > 0
    assert value('cxstream_deadletter_total{code="not_json"}') == 1
    assert value('cxstream_deadletter_total{code="missing_field"}') == 1
    assert "cxstream_consumer_lag_records{" in text
    assert value('cxstream_profile_changes_total{change="created"}') > 0


def dashboard_targets() -> list[tuple[str, str, str]]:
    dash = orjson.loads(DASHBOARD.read_bytes())
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"]
            for k in sorted(GRAFANA_VARS, key=len, reverse=True):  # $__range before $__rate_interval etc.
                expr = expr.replace(k, GRAFANA_VARS[k])
            out.append((panel["title"], panel["type"], expr))
    return out


def test_the_dashboard_starts_with_program_health() -> None:
    dash = orjson.loads(DASHBOARD.read_bytes())
    titles = [p["title"] for p in dash["panels"]]
    assert titles[0].startswith("Program health")
    assert titles[1:5] == [
        "Identity resolution rate",
        "Valid-event share",
        "Consent coverage",
        "Triggers by rule (time range)",
    ]
    rows = [p["title"].split(" (")[0] for p in dash["panels"] if p["type"] == "row"]
    assert rows == [
        "Program health",
        "Does it work?",
        "Throughput",
        "Latency",
        "Consumer lag",
        "Timers",
        "Redis and Kafka",
    ]
    assert all("$" not in expr for _, _, expr in dashboard_targets()), (
        "a Grafana variable the test does not set"
    )


def test_every_dashboard_query_returns_data(observed: Observed) -> None:
    targets = dashboard_targets()
    assert len(targets) >= 30
    empty = []
    for title, kind, expr in targets:
        data = observed.prom.query(expr)  # raises with Prometheus's parse error
        if not data["result"]:
            empty.append(f"{title}: {expr}")
            continue
        if kind == "stat":  # the program-health ratios: a real share, not NaN
            (sample,) = data["result"]
            v = float(sample["value"][1])
            assert not math.isnan(v) and 0 <= v <= 1, f"{title} = {v}"
            print(f"\n{title}: {v:.3f}", end="")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_the_alert_rules_evaluate_cleanly_on_real_series(observed: Observed) -> None:
    with urllib.request.urlopen(f"{observed.prom.url}/api/v1/rules", timeout=10) as r:
        groups = orjson.loads(r.read())["data"]["groups"]
    rules = [rule for g in groups for rule in g["rules"]]
    assert len(rules) == 7
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    assert {r["name"] for r in rules if r["state"] == "firing"} == set()


def test_no_email_or_phone_of_the_input_reaches_the_log(observed: Observed) -> None:
    text = observed.log.read_text()
    lines = text.splitlines()
    assert len(lines) > 50, "the worker logged almost nothing: is the level debug?"
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json[:5]
    assert any('"logger":"faust.' in line for line in lines), "faust's own lines are missing"
    # the unmatched erasure request is logged from inside an intake batch: with its context
    (erasure,) = [orjson.loads(line) for line in lines if "matched no profile" in line]
    assert erasure["stage"] == "intake" and erasure["topic"] == observed.settings.topic_raw
    assert isinstance(erasure["partition"], int | list) and "offset" in erasure
    assert len(observed.pii) > 400  # the demo's emails and phones, and ours
    leaked = sorted(p for p in observed.pii if p in text or p.lower() in text.lower())
    assert not leaked, leaked[:10]


def test_timer_lateness_is_wall_time_and_stays_under_the_alert_on_an_event_clock_replay(
    observed: Observed,
) -> None:
    """The demo replayed on the event clock moves the clock days in one batch. Lateness is the
    wall time from the moment the clock reached a timer until it fired, so every timer of this
    healthy run is well within the alert's 60 s and CxstreamTimerLateness never even goes
    pending (it did while lateness was measured on the event clock)."""
    text = observed.scrape.decode()

    def series(name: str) -> float:
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        assert m, f"{name} not in the scrape"
        return float(m.group(1))

    count = series("cxstream_timer_lateness_seconds_count")
    assert count > 0, "no timer fired: the replay does not exercise the alert"
    within = series('cxstream_timer_lateness_seconds_bucket{le="60.0"}')
    assert within == count, f"{count - within:.0f} of {count:.0f} timers more than 60 s late"
    assert series("cxstream_timer_lateness_seconds_sum") / count < 10
    # the alert's own expression, on what Prometheus scraped during the replay
    (p99,) = observed.prom.query(
        "histogram_quantile(0.99, sum by (job, le) (rate(cxstream_timer_lateness_seconds_bucket[10m])))"
    )["result"]
    assert float(p99["value"][1]) < 60, p99
    # neither pending nor firing at any rule evaluation of the run (ALERTS holds pending too)
    seen = observed.prom.query('max_over_time(ALERTS{alertname="CxstreamTimerLateness"}[1h])')["result"]
    assert seen == [], seen
    print(f"\n{count:.0f} timers fired, p99 lateness {float(p99['value'][1]):.2f}s", end="")
