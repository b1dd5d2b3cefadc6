"""Where a worker's main thread waits: a trace for ``bench_ratio.py --trace FILE`` (bench only).

On ``PYTHONPATH`` with ``CX_BENCH_TRACE=FILE`` set, a ``cxstream worker`` process writes
to FILE, without touching the worker's code:

* ``B <stage> <start> <end>``: each batch of the intake and decide agents (``streams.app._finish``);
* ``R <op> <start> <end>``: each Redis call (``streams.redis_io.call``, by its op name);
* ``P send <start> <end>``: each produce, until Kafka acked it (``streams.app.send_all``);
* ``C <time> <ns>``: the main thread's time on a CPU (``/proc/.../schedstat``), every 50 ms;

and ``sampler.py``, a process of its own, writes to FILE.w what the main thread is doing,
every millisecond (running, waiting in its event loop, waiting for the GIL).

Times are ``time.perf_counter()`` seconds. ``trace_summary.py`` reads the file.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import threading
import time
from typing import Any

_PATH = os.environ.get("CX_BENCH_TRACE")


def _install(path: str) -> None:
    import streams.app as app
    import streams.redis_io as rio

    out = open(path, "w", buffering=1 << 20)  # noqa: SIM115  # flushed by the sampler thread
    lock = threading.Lock()
    pc = time.perf_counter

    def write(line: str) -> None:
        with lock:
            out.write(line)

    def timed(kind: str, name_of: Any, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = pc()
            try:
                return await fn(*args, **kwargs)
            finally:
                write(f"{kind} {name_of(args)} {t0:.6f} {pc():.6f}\n")

        return wrapper

    # module globals, looked up at call time by the agents (app) and the stores (redis_io.call)
    rio.call = timed("R", lambda a: a[0], rio.call)
    app._finish = timed("B", lambda a: a[0], app._finish)
    app.send_all = timed("P", lambda _a: "send", app.send_all)
    tid = threading.get_native_id()

    def sample() -> None:
        while True:
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    on_cpu_ns = f.read().split()[0]
            except OSError:
                return
            write(f"C {pc():.6f} {on_cpu_ns}\n")
            with lock:
                out.flush()
            time.sleep(0.05)

    threading.Thread(target=sample, name="bench-trace", daemon=True).start()
    sampler = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sampler.py")
    # its own process (not a thread here: it would take the GIL), without this hook (no environment)
    subprocess.Popen([sys.executable, sampler, str(os.getpid()), str(tid), path + ".w"], env={})


if _PATH:
    _import = builtins.__import__

    def _hooked(name: str, *args: Any, **kwargs: Any) -> Any:
        module = _import(name, *args, **kwargs)
        if name == "streams.app" and "worker" in sys.argv:
            builtins.__import__ = _import
            _install(_PATH)
        return module

    builtins.__import__ = _hooked
