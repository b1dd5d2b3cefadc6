"""A real worker on a local Redis Cluster (3 primaries + 3 replicas) with the Tansu broker.

``CXSTREAM_REDIS_CLUSTER=true``, ``CXSTREAM_REDIS_URL`` naming one node, the event clock: the
bundled demo journeys give the triggers :func:`streams.simulate.simulate_file` gives on the same
input, compared by id and payload (``data`` without ``profileId``; ``subject`` and
``partitionkey`` are the profile id too: the id a profile gets may follow processing order).

The second test kills, a third of the way into a paced replay, the primary that the URL names
and that owns the identity graph's slot (``{<prefix>:idg}``, chosen so): its replica takes over
within seconds, the worker waits the outage out (``redis_io.call``) and stays up, and at the end
nothing is missing, nothing is extra, no id has another payload. Repeats of an id with the same
payload (a redelivery) are allowed and counted. Then ``cxstream profile show`` reads a profile
from the cluster through a node that is still alive.

Both run in ``make test`` (about 25 s and 35 s on 2 idle cores; each starts its own broker and
cluster). Measured figures are printed (``pytest -s``): time to promote, the worker's Redis
retries (``cxstream_redis_errors_total`` from its /metrics) and outage lines, repeats.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from helpers import fresh_settings, person_keys, running_worker
from redis.crc import key_slot

from streams.constants import Keys
from streams.demo import DEMO_FILE
from streams.kafka import create_topics
from streams.replay import lines
from streams.settings import Settings
from streams.simulate import SimResult, simulate_file
from streams.stack import LocalCluster, free_port

pytestmark = pytest.mark.stack

#: after the last expected record arrived: how long to keep reading for extras and repeats
LINGER = 5.0
#: events/s of the paced replay in the failover test (the demo's 5440 events in ~12 s; the
#: primary dies ~4 s in and its replica serves ~2.5 s later, well inside the replay)
RATE = 450.0


# ------------------------------------------------------------------------------------ fixture
@pytest.fixture
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A broker and a 3 + 3 Redis Cluster of the test's own (node timeout 1 s), to kill nodes of."""
    with LocalCluster(workdir=tmp_path_factory.mktemp("cluster-worker"), broker=True) as c:
        yield c


# ------------------------------------------------------------------------------------ the input
def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def slot_owner(cluster: LocalCluster, slot: int) -> int:
    """The port of the primary serving ``slot`` now (CLUSTER SLOTS, asked of a live node)."""
    with redis.Redis(port=cluster.live_ports()[0], socket_timeout=5) as c:
        for start, end, primary, *_ in c.execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
    raise AssertionError(f"slot {slot} is not served")


def prefix_on(cluster: LocalCluster, port: int) -> str:
    """A fresh key prefix whose identity graph (``{<prefix>:idg}``) lives on the primary at ``port``."""
    for _ in range(1000):
        prefix = f"wc-{uuid.uuid4().hex[:8]}"
        if slot_owner(cluster, key_slot(Keys(prefix).graph.encode())) == port:
            return prefix
    raise AssertionError(f"no prefix found with its identity graph on :{port}")


def on_cluster(cluster: LocalCluster, **overrides: Any) -> Settings:
    """Settings for a worker on the cluster: fresh topics and app id, the event clock."""
    s = fresh_settings(
        cluster,
        redis_cluster=True,
        clock="event",
        watermark_idle_timeout=4.0,
        metrics_port=free_port(),  # to read cxstream_redis_errors_total (the retries) before it stops
        **overrides,
    )
    asyncio.run(create_topics(s))
    return s


class PacedReplay(threading.Thread):
    """Produce ``records`` in order at ``rate`` events/s (0: as fast as possible) with confluent-kafka,
    one request in flight (a retry cannot reorder a person's events); ``sent`` counts them."""

    def __init__(self, s: Settings, records: list[tuple[bytes | None, bytes]], rate: float) -> None:
        super().__init__(daemon=True, name="paced-replay")
        self.s, self.records, self.rate = s, records, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            p = Producer(
                {
                    "bootstrap.servers": self.s.kafka_bootstrap,
                    "acks": "all",
                    "linger.ms": 5,
                    "partitioner": "murmur2_random",
                    "max.in.flight.requests.per.connection": 1,
                }
            )
            failed: list[Any] = []
            start = time.monotonic()
            for n, (key, value) in enumerate(self.records, 1):
                p.produce(
                    self.s.topic_raw, value, key, on_delivery=lambda e, _m: failed.append(e) if e else None
                )
                self.sent = n
                p.poll(0)
                ahead = n / self.rate - (time.monotonic() - start) if self.rate else 0
                if ahead > 0:
                    time.sleep(ahead)
            assert p.flush(60) == 0, "not every event was delivered"
            assert not failed, failed[:3]
        except BaseException as exc:  # reported by the test
            self.error = exc


@dataclass
class Read:
    got: dict[str, list[bytes]]
    complete_at: float  # time.monotonic() when the last expected id arrived (0: never)


def read_until(
    s: Settings, topics: dict[str, set[str]], *, timeout: float, alive: Callable[[], bool]
) -> Read:
    """Read ``topics`` from the beginning (confluent-kafka, assign, no group) until every expected
    id of each arrived and nothing more came for ``LINGER`` s, the worker died, or ``timeout``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": f"cluster-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    tps = []
    for t in topics:
        tps += [
            TopicPartition(t, p, OFFSET_BEGINNING) for p in c.list_topics(t, timeout=10).topics[t].partitions
        ]
    c.assign(tps)
    got: dict[str, list[bytes]] = {t: [] for t in topics}
    seen: dict[str, set[str]] = {t: set() for t in topics}
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    complete_at = 0.0
    try:
        while time.monotonic() < deadline and alive():
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                got[msg.topic()].append(msg.value())
                seen[msg.topic()].add(orjson.loads(msg.value())["id"])
                last = time.monotonic()
            if not complete_at and all(want <= seen[t] for t, want in topics.items()):
                complete_at = time.monotonic()
            if complete_at and time.monotonic() - last >= LINGER:
                break
    finally:
        c.close()
    return Read(got, complete_at)


def readyz(s: Settings) -> tuple[int, str]:
    """The worker's ``/readyz``: (status, body); (0, why) while nothing answers on its port."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}/readyz", timeout=5) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()
    except OSError as exc:
        return 0, str(exc)


def wait_ready(s: Settings, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> float:
    """Until the worker's ``/readyz`` says 200 (it holds its partitions, Kafka and Redis answer);
    the seconds it took."""
    start = time.monotonic()
    state = readyz(s)
    while state[0] != 200:
        assert proc.poll() is None, "the worker died:\n" + log.read_text()[-3000:]
        assert time.monotonic() - start < timeout, f"not ready after {timeout:.0f}s: {state}"
        time.sleep(0.2)
        state = readyz(s)
    return time.monotonic() - start


def redis_retries(s: Settings) -> int:
    """The worker's ``cxstream_redis_errors_total`` (every op): Redis calls that failed and were retried."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(
        sum(
            float(x.rsplit(" ", 1)[1])
            for x in text.splitlines()
            if x.startswith("cxstream_redis_errors_total{")
        )
    )


# ---------------------------------------------------------------------------------- comparison
def essence(value: bytes) -> tuple[str, bytes]:
    """(id, what must match simulate's): the record without the profile id. An activation (a
    CloudEvent) drops ``data.profileId``, ``subject`` and ``partitionkey``; a decision ``profileId``."""
    doc = orjson.loads(value)
    if "specversion" in doc:
        doc = {k: v for k, v in doc.items() if k not in ("subject", "partitionkey")}
        doc["data"] = {k: v for k, v in doc.get("data", {}).items() if k != "profileId"}
    else:
        doc = {k: v for k, v in doc.items() if k != "profileId"}
    return str(doc["id"]), orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


@dataclass
class Comparison:
    expected: int
    seen: int  # records read, repeats included
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    differing: dict[str, list[bytes]] = field(default_factory=dict)  # id -> simulate's, then the seen
    repeats: int = 0  # records beyond the first of their id, with the same payload

    def report(self) -> str:
        out = [
            f"expected {self.expected}, read {self.seen}: missing {len(self.missing)}, "
            f"extra {len(self.extra)}, differing {len(self.differing)}, repeats {self.repeats}"
        ]
        out += [f"  missing {i}" for i in self.missing[:10]] + [f"  extra {i}" for i in self.extra[:10]]
        for i, bodies in list(self.differing.items())[:5]:
            out += [f"  differing {i}:"] + [f"    {b.decode()}" for b in bodies]
        return "\n".join(out)


def compare(expected: list[bytes], seen: list[bytes]) -> Comparison:
    want: dict[str, bytes] = {}
    for v in expected:
        i, body = essence(v)
        assert i not in want, f"simulate gave {i} twice"
        want[i] = body
    got: dict[str, list[bytes]] = {}
    for v in seen:
        i, body = essence(v)
        got.setdefault(i, []).append(body)
    c = Comparison(len(want), len(seen), sorted(set(want) - set(got)), sorted(set(got) - set(want)))
    for i, bodies in got.items():
        distinct = list(dict.fromkeys(bodies))
        if len(distinct) > 1 or (i in want and distinct[0] != want[i]):
            c.differing[i] = [want[i], *distinct] if i in want else distinct
        else:
            c.repeats += len(bodies) - 1
    return c


def outage_lines(log: Path) -> tuple[int, int, list[str]]:
    """(outages begun, outages over, the lines) from the worker's log (``redis_io.Outage``)."""
    text = log.read_text(errors="replace").splitlines()
    began = [x for x in text if "unavailable (" in x and "retrying with backoff" in x]
    over = [x for x in text if "is back after" in x]
    return len(began), len(over), began + over


def a_user_id(path: Path) -> str:
    """A userId of the demo with a few events (a known profile)."""
    counts: dict[str, int] = {}
    for line in lines(path):
        uid = orjson.loads(line).get("userId")
        if uid:
            counts[uid] = counts.get(uid, 0) + 1
    return max(sorted(counts), key=lambda u: counts[u])


def profile_show(s: Settings, url: str, ref: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    env.update(
        CXSTREAM_REDIS_CLUSTER="true",
        CXSTREAM_REDIS_URL=url,
        CXSTREAM_REDIS_PREFIX=s.redis_prefix,
        CXSTREAM_PARTITIONS=str(s.partitions),
    )
    cli = Path(sys.executable).parent / "cxstream"
    return subprocess.run(
        [str(cli), "profile", "show", ref], env=env, capture_output=True, text=True, timeout=60
    )


# -------------------------------------------------------------------------------------- tests
def expected_ids(s: Settings, sim: SimResult) -> dict[str, set[str]]:
    return {
        s.topic_activations: {orjson.loads(v)["id"] for v in sim.activations},
        s.topic_decisions: {orjson.loads(v)["id"] for v in sim.decisions},
    }


def since(start: float, read: Read) -> str:
    return f"in {read.complete_at - start:.1f}s" if read.complete_at else "NEVER"


def check_profile_show(s: Settings, url: str) -> str:
    """``cxstream profile show user_id:<a demo user>`` against the cluster prints that profile."""
    user = a_user_id(DEMO_FILE)
    shown = profile_show(s, url, f"user_id:{user}")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.startswith("profile p_"), shown.stdout
    assert ["user_id", user] in [x.split() for x in shown.stdout.splitlines()], shown.stdout
    return shown.stdout.splitlines()[0]


def test_a_worker_on_a_redis_cluster_gives_simulates_triggers(
    cluster_stack: LocalCluster, tmp_path: Path
) -> None:
    cluster = cluster_stack
    s = on_cluster(cluster)
    sim = asyncio.run(simulate_file(s, DEMO_FILE))
    assert len(sim.activations) > 100 and len(sim.decisions) > len(sim.activations)
    keys = person_keys(DEMO_FILE)
    records = [(keys.get(line), line) for line in lines(DEMO_FILE)]
    log = tmp_path / "worker.log"
    start = time.monotonic()
    with running_worker(s, log) as proc:
        ready_after = wait_ready(s, proc, log)
        replay = PacedReplay(s, records, rate=0)
        replay.start()
        read = read_until(s, expected_ids(s, sim), timeout=120, alive=lambda: proc.poll() is None)
        replay.join(30)
        assert replay.error is None, replay.error
        assert proc.poll() is None, "the worker died:\n" + log.read_text()[-3000:]
        retries = redis_retries(s)
    acts = compare(sim.activations, read.got[s.topic_activations])
    decs = compare(sim.decisions, read.got[s.topic_decisions])
    print(
        f"\n{len(records)} events, worker on a 3+3 cluster (URL :{port_of(cluster.redis_url)}), ready after "
        f"{ready_after:.1f}s: all expected "
        f"{since(start, read)} from its start; "
        f"{retries} Redis retries\nactivations: {acts.report()}\ndecisions: {decs.report()}"
    )
    for c in (acts, decs):
        assert not (c.missing or c.extra or c.differing), c.report() + "\n" + log.read_text()[-3000:]
    assert acts.repeats == 0 and decs.repeats == 0, "no redelivery without a failure"
    print(check_profile_show(s, cluster.redis_url))


def test_a_worker_on_a_redis_cluster_survives_its_primary_failing_over_mid_stream(
    cluster_stack: LocalCluster, tmp_path: Path
) -> None:
    cluster = cluster_stack
    url_node = port_of(cluster.redis_url)
    # the node the URL names also holds the identity graph: every event's resolution waits on it
    s = on_cluster(cluster, redis_prefix=prefix_on(cluster, url_node))
    graph_slot = key_slot(Keys(s.redis_prefix).graph.encode())
    sim = asyncio.run(simulate_file(s, DEMO_FILE))
    keys = person_keys(DEMO_FILE)
    records = [(keys.get(line), line) for line in lines(DEMO_FILE)]
    log = tmp_path / "worker.log"
    start = time.monotonic()
    with running_worker(s, log) as proc:
        ready_after = wait_ready(s, proc, log)  # so the kill lands mid-stream, not during start-up
        replay = PacedReplay(s, records, rate=RATE)
        replay.start()
        wait = time.monotonic() + 120
        while replay.sent < len(records) // 3 and replay.error is None and time.monotonic() < wait:
            time.sleep(0.05)
        assert replay.error is None, replay.error
        assert replay.sent >= len(records) // 3, "the replay did not get a third of the way in time"
        sent_at_kill = replay.sent
        assert slot_owner(cluster, graph_slot) == url_node
        killed_at = time.monotonic()
        dead = cluster.kill_primary(url_node)
        new = cluster.wait_promoted(dead)
        promoted_after = time.monotonic() - killed_at
        assert slot_owner(cluster, graph_slot) == new
        read = read_until(s, expected_ids(s, sim), timeout=240, alive=lambda: proc.poll() is None)
        replay.join(60)
        assert replay.error is None, replay.error
        assert proc.poll() is None, "the worker died:\n" + log.read_text()[-3000:]
        retries = redis_retries(s)
        ready_again = wait_ready(s, proc, log, timeout=30)  # its Redis probe no longer pings the dead node
    began, over, outage = outage_lines(log)
    acts = compare(sim.activations, read.got[s.topic_activations])
    decs = compare(sim.decisions, read.got[s.topic_decisions])
    print(
        f"\n{len(records)} events at {RATE:.0f}/s once the worker was ready ({ready_after:.1f}s); "
        f"killed :{dead} (the URL's node, identity graph slot {graph_slot}) after {sent_at_kill} sent; "
        f"its replica :{new} took over after {promoted_after:.1f}s; all expected {since(start, read)} "
        f"from the worker's start; /readyz 200 again {ready_again:.1f}s later; {retries} Redis retries; "
        f"outages logged: {began} begun, {over} over\n  "
        + "\n  ".join(x[x.find("{") :][:260] for x in outage)
        + f"\nactivations: {acts.report()}\ndecisions: {decs.report()}"
    )
    for c in (acts, decs):
        assert not (c.missing or c.extra or c.differing), c.report() + "\n" + log.read_text()[-3000:]
    assert began >= 1 and retries >= 1, "the kill should land while the worker runs (an outage waited out)"
    assert promoted_after < 15
    # an operator's look at a profile, through a node still alive (the URL's node is dead)
    print(check_profile_show(s, f"redis://127.0.0.1:{new}/0"))
