"""Profile API latency and throughput: lookups of known profiles among N, from one ``cxstream api``.

    .venv/bin/python bench/bench_api.py [--profiles 1000000] [--seconds 15] [--concurrency 1,8,32]

Starts its own redis-server on a free port. Loads N profiles in the stored layout: one person
goes through the pipeline's own stages (``tests/api/journey.py``: web, email, CRM and store, a
merge, orders, consent, a segment and two triggers; ~1.5 KB of state), and a Lua script clones
what that left in Redis N times, server-side (identity index, profile hash, identifiers, traits,
channels, decision-stage state), each clone with identifiers of its own. Then one ``cxstream
api`` process (access log on, to a file, as deployed) serves closed-loop clients (aiohttp, keep-
alive) that look up random known profiles by ``user_id`` or ``email`` for ``--seconds`` at each
concurrency. Every answer must be 200. Prints requests/s and client-side p50/p90/p99/max (ms).

Prints numbers; asserts nothing (performance goals live here, not in timed tests). Target (issue
16): p99 < 10 ms and >= 1,000 requests/s from one process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from api.journey import ann  # noqa: E402  (tests/ holds the journey and the process helper)
from api.server import TOKEN, load_sync, running_api  # noqa: E402

from streams.constants import Keys  # noqa: E402
from streams.settings import Settings, load_settings  # noqa: E402
from streams.stack import _wait_redis, free_port, redis_binary  # noqa: E402

#: Clones ``ARGV[2]`` (the template, JSON) for profiles ARGV[3] .. ARGV[3]+ARGV[4]-1. One server
#: only: the keys are computed in the script (a bench shortcut; the stores never do this).
CLONE = """
local graph, t, first, n = ARGV[1], cjson.decode(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = first, first + n - 1 do
  local pid = string.format('p_%024x', i)
  local pk = graph .. ':p:' .. pid
  local ids = {}
  for _, id in ipairs(t.ids) do
    local ty, v = id[1], id[2]
    if ty == 'email' then v = 'p' .. i .. '.' .. v
    elseif ty == 'phone' then v = string.format('+1415%07d', i % 10000000)
    else v = v .. '-' .. i end
    redis.call('SET', graph .. ':i:' .. ty .. ':' .. v, pid)
    ids[#ids + 1] = ty .. ':' .. v
  end
  redis.call('SADD', pk .. ':ids', unpack(ids))
  redis.call('HSET', pk, unpack(t.meta))
  if #t.traits > 0 then redis.call('HSET', pk .. ':traits', unpack(t.traits)) end
  if #t.ch > 0 then redis.call('HSET', pk .. ':ch', unpack(t.ch)) end
  redis.call('SET', '{' .. t.prefix .. ':s:' .. pid .. '}', (string.gsub(t.state, t.pid, pid)))
end
return n
"""


def _flat(h: dict[bytes, bytes]) -> list[str]:
    return [x.decode() for kv in sorted(h.items()) for x in kv]


def template(settings: Settings, r: redis.Redis) -> dict[str, Any]:
    """One person through the pipeline, read back as it is stored."""
    j = ann()
    load_sync(settings, j.messages)
    keys = Keys(settings.redis_prefix)
    pid = r.get(keys.identifier("user_id", j.refs[0].split(":", 1)[1]))
    assert pid is not None
    p = pid.decode()
    pk = keys.profile(p)
    ids = [m.decode().split(":", 1) for m in sorted(r.smembers(pk + ":ids"))]  # type: ignore[union-attr]
    state = r.get(keys.state(p))
    assert state is not None
    return {
        "pid": p,
        "prefix": settings.redis_prefix,
        "ids": ids,
        "meta": _flat(r.hgetall(pk)),  # type: ignore[arg-type]
        "traits": _flat(r.hgetall(pk + ":traits")),  # type: ignore[arg-type]
        "ch": _flat(r.hgetall(pk + ":ch")),  # type: ignore[arg-type]
        "state": state.decode(),
    }


def clone(r: redis.Redis, graph: str, tpl: dict[str, Any], n: int, chunk: int = 5000) -> float:
    script = r.register_script(CLONE)
    raw = orjson.dumps(tpl).decode()
    t = time.perf_counter()
    for first in range(0, n, chunk):
        script(args=[graph, raw, first, min(chunk, n - first)])
    return time.perf_counter() - t


async def drive(url: str, n: int, tpl: dict[str, Any], conc: int, seconds: float) -> dict[str, float]:
    uid = next(v for ty, v in tpl["ids"] if ty == "user_id")
    email = next(v for ty, v in tpl["ids"] if ty == "email")
    lat: list[float] = []
    bad = 0
    stop = 0.0
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def worker(session: aiohttp.ClientSession, rnd: random.Random) -> None:
        nonlocal bad
        while time.perf_counter() < stop:
            i = rnd.randrange(n)
            ref = f"user_id:{uid}-{i}" if rnd.random() < 0.5 else f"email:p{i}.{email}"
            t = time.perf_counter()
            async with session.get(f"{url}/v1/profiles/{ref}", headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    bad += 1
            lat.append(time.perf_counter() - t)

    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as session:
        stop = time.perf_counter() + 2  # warm-up: connections, caches
        await asyncio.gather(*(worker(session, random.Random(k)) for k in range(conc)))
        warm = len(lat)
        lat.clear()
        bad = 0
        start = time.perf_counter()
        stop = start + seconds
        await asyncio.gather(*(worker(session, random.Random(100 + k)) for k in range(conc)))
        took = time.perf_counter() - start
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    return {
        "rps": len(lat) / took,
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": lat[-1] * 1000,
        "n": len(lat),
        "bad": bad,
        "warm": warm,
    }


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--concurrency", default="1,8,32")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    port = free_port()
    server = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
    )
    try:
        _wait_redis(port, 10)
        url = f"redis://127.0.0.1:{port}/0"
        s = load_settings(
            redis_url=url,
            redis_prefix="bench",
            rules=("cart_abandoned", "loan_eligibility_repeat", "segments"),
            api_tokens=TOKEN,
            metrics_port=0,
        )
        r = redis.Redis(host="127.0.0.1", port=port)
        tpl = template(s, r)
        before = int(r.info("memory")["used_memory"])
        took = clone(r, Keys(s.redis_prefix).graph, tpl, args.profiles)
        mem = (int(r.info("memory")["used_memory"]) - before) / args.profiles
        print(
            f"loaded {args.profiles:,} profiles in {took:.1f}s ({args.profiles / took:,.0f}/s); "
            f"Redis {mem:,.0f} bytes/profile; state {len(tpl['state']):,} bytes, "
            f"{len(tpl['ids'])} identifiers, {len(tpl['traits']) // 2} traits each"
        )
        with running_api(s, work / "api.log") as api:
            for conc in (int(c) for c in args.concurrency.split(",")):
                cpu = _cpu(api.proc.pid)
                m = asyncio.run(drive(api.url, args.profiles, tpl, conc, args.seconds))
                per = (_cpu(api.proc.pid) - cpu) / (m["n"] + m["warm"]) * 1e6
                print(
                    f"concurrency {conc:>3}: {m['rps']:,.0f} req/s  p50 {m['p50']:.2f} ms  "
                    f"p90 {m['p90']:.2f} ms  p99 {m['p99']:.2f} ms  max {m['max']:.1f} ms  "
                    f"({m['n']:,} lookups, {m['bad']} not 200; API process CPU {per:.0f} us/lookup, "
                    f"i.e. {1e6 / per:,.0f} lookups/s per core)"
                )
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
