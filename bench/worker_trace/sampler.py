"""What a worker's main thread is doing, sampled from outside every millisecond (bench only).

    python sampler.py PID TID FILE

Started by ``sitecustomize.py`` (``bench_ratio.py --trace``) as a process of its own, so it
takes nothing from the worker's GIL. Writes ``W <time> <state> <wchan>`` lines: the thread's
scheduler state (``R`` running or waiting for a CPU, ``S`` asleep, ...) and, asleep, the kernel
function it sleeps in (``ep_poll``: its event loop waits for a socket or a timer; ``futex...``:
it waits for a lock, the GIL among them). Times are ``time.perf_counter()`` seconds, the
clock of the trace's other lines (``CLOCK_MONOTONIC``). Exits when the thread does (the
SIGTERM that stops the worker's process group is ignored: the lines are written first).
"""

from __future__ import annotations

import signal
import sys
import time


def main() -> None:
    pid, tid, path = sys.argv[1], sys.argv[2], sys.argv[3]
    stat, wchan = f"/proc/{pid}/task/{tid}/stat", f"/proc/{pid}/task/{tid}/wchan"
    pc = time.perf_counter
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(path, "w", buffering=1 << 20) as out:
        while True:
            try:
                with open(stat) as f:
                    state = f.read().rsplit(")", 1)[1].split(None, 1)[0]
                where = "-"
                if state != "R":  # asleep: where
                    with open(wchan) as f:
                        where = f.read().strip() or "-"
            except OSError:
                return
            out.write(f"W {pc():.6f} {state} {where}\n")
            time.sleep(0.001)


if __name__ == "__main__":
    main()
