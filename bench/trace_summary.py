"""Summary of a worker trace (``bench/worker_trace``, ``bench_ratio.py --trace FILE``).

    .venv/bin/python bench/trace_summary.py FILE

Two phases: while intake drains the backlog (its first batch to its last), then the decide stage
alone. For each: wall time, the main thread's CPU time, and its busy share; and the idle time
(wall minus CPU) split by what was in flight when the thread slept (Redis calls by op, ``send``
for produces waiting on Kafka's acks; ``|I``/``|D``: the intake/decide batch in hand). The
split comes from 50 ms windows, 10 points each. Also the calls of each kind: how many, and their
mean time in flight (which includes waiting for the thread when it was busy with the other stage).

With the sampler's FILE.w (``worker_trace/sampler.py``), each phase gets the thread's
millisecond samples instead of the 50 ms split: running (or runnable), waiting in its event
loop (``ep_poll``: for a socket or a timer; split by what was in flight at that very sample),
waiting for a lock (the GIL, mostly: faust's consumer thread holds it), or elsewhere. That
split is exact where the 50 ms one smears a window's idle time over the whole window.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import itertools
from collections.abc import Callable
from pathlib import Path

Span = tuple[str, str, float, float]


def read(path: Path) -> tuple[list[Span], list[tuple[float, int]]]:
    spans: list[Span] = []
    cpu: list[tuple[float, int]] = []
    for line in path.read_text().splitlines():
        p = line.split()
        if p[0] == "C" and len(p) == 3:
            cpu.append((float(p[1]), int(p[2])))
        elif len(p) == 4:
            spans.append((p[0], p[1], float(p[2]), float(p[3])))
    return spans, cpu


def summarize(path: Path) -> list[str]:
    spans, cpu = read(path)
    samples = _read_samples(path.with_name(path.name + ".w"))
    batches = {s: [x for x in spans if x[0] == "B" and x[1] == s] for s in ("intake", "decide")}
    if not batches["intake"] or not batches["decide"] or len(cpu) < 2:
        return [f"trace {path}: too short to summarize"]
    start = min(x[2] for x in batches["intake"])
    intake_end = max(x[3] for x in batches["intake"])
    end = max(intake_end, max(x[3] for x in batches["decide"]))
    lines = [
        f"worker trace: {len(batches['intake'])} intake batches over {intake_end - start:.1f} s, "
        f"{len(batches['decide'])} decide batches until {end - intake_end:.1f} s after"
    ]
    calls: collections.Counter[str] = collections.Counter()
    inflight: collections.Counter[str] = collections.Counter()
    for kind, name, a, b in spans:
        if kind in "RP":
            calls[name] += 1
            inflight[name] += b - a
    lines.append(
        "  calls (mean ms in flight): "
        + ", ".join(f"{n} {calls[n]} ({1000 * inflight[n] / calls[n]:.1f})" for n, _ in calls.most_common())
    )
    spans.sort(key=lambda x: x[2])
    starts = [x[2] for x in spans]
    longest = max((x[3] - x[2] for x in spans), default=0.0)

    def in_flight(t: float) -> str:
        lo = bisect.bisect_left(starts, t - longest)
        hi = bisect.bisect_right(starts, t)
        names, stages = set(), set()
        for kind, name, a, b in spans[lo:hi]:
            if a <= t < b:
                if kind == "B":
                    stages.add("I" if name == "intake" else "D")
                else:
                    names.add(name)
        return (" + ".join(sorted(names)) or "nothing") + " |" + "".join(sorted(stages))

    for phase, lo_t, hi_t in (("intake draining", start, intake_end), ("decide alone", intake_end, end)):
        wall = busy = 0.0
        split: collections.Counter[str] = collections.Counter()
        for (ta, ca), (tb, cb) in itertools.pairwise(cpu):
            if ta < lo_t or tb > hi_t:
                continue
            dt, used = tb - ta, (cb - ca) / 1e9
            wall += dt
            busy += used
            if dt > used and not samples:  # the millisecond samples split it exactly (below)
                for j in range(10):
                    split[in_flight(ta + dt * (j + 0.5) / 10)] += (dt - used) / 10
        if wall <= 0:
            continue
        idle = max(0.0, wall - busy)
        lines.append(
            f"  {phase}: {wall:.1f} s, main thread busy {min(busy, wall) / wall:.2f}, idle {idle:.1f} s:"
        )
        for what, secs in split.most_common(6):
            lines.append(f"    {secs:5.2f} s  {what}")
        if samples:
            lines += _sampled(samples, lo_t, hi_t, in_flight)
    return lines


def _read_samples(path: Path) -> list[tuple[float, str, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        p = line.split()
        if len(p) == 4 and p[0] == "W":
            out.append((float(p[1]), p[2], p[3]))
    return out


def _sampled(
    samples: list[tuple[float, str, str]], lo_t: float, hi_t: float, in_flight: Callable[[float], str]
) -> list[str]:
    """The phase's millisecond samples of the main thread, by what it was doing."""
    kinds: collections.Counter[str] = collections.Counter()
    waits: collections.Counter[str] = collections.Counter()
    n = 0
    for t, state, wchan in samples:
        if not lo_t <= t < hi_t:
            continue
        n += 1
        if state == "R":
            kinds["running or runnable"] += 1
        elif "epoll" in wchan:
            kinds["in its event loop"] += 1
            waits[in_flight(t)] += 1
        elif "futex" in wchan:
            kinds["waiting for a lock (the GIL)"] += 1
        else:
            kinds[f"{state} in {wchan}"] += 1
    if not n:
        return []
    out = ["    sampled every ms: " + ", ".join(f"{k} {v / n:.2f}" for k, v in kinds.most_common(4))]
    out += [f"      {v / n:.3f}  event loop waits, {what}" for what, v in waits.most_common(6)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("file", type=Path)
    print("\n".join(summarize(ap.parse_args().file)))


if __name__ == "__main__":
    main()
