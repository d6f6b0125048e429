"""Instructions, not seconds: the caller's path and the dispatcher's, counted by callgrind.

On a shared machine (half of each core stolen by other guests, at times) timings move by
30-50 % from run to run, ratios less but still too much to tell a 10 % change.
``valgrind --tool=callgrind`` counts the instructions a process executes: the same code,
inputs and interpreter give the same count, whatever else the machine is doing. Each figure
counts the work alone, divided by N: callgrind collects only inside ``sys.call_tracing``,
which the script calls once, with the work, after a warm-up and ``gc.collect()`` and
``gc.freeze()``, so the collector's passes fall where the work puts them and walk only what
it made. (A run of N minus a run of none, as before, moved by 2 % between trees that differ
only in their imports, and between sittings: a collector's pass fell inside the work or not,
and the start and the exit missed the type cache differently; docs/performance.md.)
Single-threaded by construction: the occurrences the caller queues are kept in a list, and
the dispatcher's step (``Runtime._handle_batch``) is driven on the main thread over that list.

1. caller: instructions per ``log.warning("Back-off pulling image %s", ..., extra={"involved":
   pod, "reason": "BackOff"})`` with our handler (its queue replaced by a list), with a
   ``QueueHandler`` (the floor of issue 15) and with a ``NullHandler`` (logging's own cost);
2. dispatcher: instructions per occurrence to turn queued occurrences into correlated,
   queued writes (to a sink that keeps them in memory), for the Zipf mix of issue 15 over
   1,000 pods, in batches of 128 (about what one 5 ms switch interval of a logging loop
   queues) and of 4,096 (a deep queue);
3. writer: instructions per write of a distinct event (a create, its answer read and fed
   back to the correlator), the writes made on the main thread (no writer thread starts)
   over a keep-alive connection to the local API server in its own process, which
   callgrind does not count.

    python bench/instructions.py [--calls 3000] [--occurrences 5000] [--tree PATH]
                                 [--writes 1000] [--only caller|dispatcher|writer]

``--tree`` measures another checkout of the project (say, a ``git worktree`` of an older
commit) with the same script, for a before/after. Takes a few minutes: every run is under
valgrind, about 50 times slower than normal. Needs valgrind (Debian's package), and an
interpreter whose symbols it reads (``sys_call_tracing``: a pyenv build's are there).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.dirname(HERE)
ZIPF_EXPONENT = 1.5

CALLER = """
import gc, logging, logging.handlers, queue, sys
tree, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path[:0] = [tree, tree + "/bench"]
from _common import make_pods
from k8s_logging_events import KubernetesEventHandler, _runtime
kept = []
_runtime.Runtime.offer = lambda self, item: (kept.append(item), True)[1]
handlers = {
    "ours": lambda: KubernetesEventHandler(sink=None, component="bench", host="node-1"),
    "floor": lambda: logging.handlers.QueueHandler(queue.SimpleQueue()),
    "null": logging.NullHandler,
}
log = logging.getLogger("bench.instructions")
log.propagate = False
log.addHandler(handlers[mode]())
pods = make_pods(1000, "cost", "default")
extras = [{"involved": pods[i % 1000], "reason": "BackOff"} for i in range(200 + count)]
def calls(extras):
    for extra in extras:
        log.warning("Back-off pulling image %s", "busybox", extra=extra)
calls(extras[:200])  # warm up
gc.collect()  # the collector's counts and heap as the work alone leaves them (see above)
gc.freeze()
sys.call_tracing(calls, (extras[200:],))
"""

DISPATCHER = """
import gc, logging, random, sys
tree, batch, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path[:0] = [tree, tree + "/bench"]
from _common import make_pods
from k8s_logging_events import KubernetesEventHandler, _runtime, recorder
from k8s_logging_events.testing import FakeEventSink
kept = []
offer = _runtime.Runtime.offer
_runtime.Runtime.offer = lambda self, item: (kept.append(item), True)[1]
log = logging.getLogger("bench.instructions")
log.propagate = False
log.addHandler(KubernetesEventHandler(sink=None, component="bench", host="node-1"))
pods = make_pods(1000, "cost", "default")
weights = [1 / rank**EXPONENT for rank in range(1, 1001)]
for pod in random.Random(1).choices(pods, weights=weights, k=2000 + MAX):
    extra = {"involved": pod, "reason": "BackOff"}
    log.warning("Back-off pulling image %s", "busybox", extra=extra)
_runtime.Runtime.offer = offer
broadcaster = recorder.EventBroadcaster()
broadcaster.start_recording_to_sink(FakeEventSink())
runtime = broadcaster._runtime
runtime._started = True  # no dispatcher thread: this thread does its work
def dispatch(items):
    for start in range(0, len(items), batch):
        runtime._handle_batch(items[start:start + batch])
dispatch(kept[:2000])  # warm: the correlator knows the objects
gc.collect()  # the collector's counts and heap as the work alone leaves them (see above)
gc.freeze()
sys.call_tracing(dispatch, (kept[2000:2000 + count],))
"""

WRITER = """
import gc, logging, sys
tree, count = sys.argv[1], int(sys.argv[2])
sys.path[:0] = [tree, tree + "/bench"]
from _common import ApiServerProcess, make_pods
from k8s_logging_events import KubernetesEventHandler, _runtime, recorder
from k8s_logging_events.sink import KubernetesEventSink
kept = []
_runtime.Runtime.offer = lambda self, item: (kept.append(item), True)[1]
log = logging.getLogger("bench.instructions")
log.propagate = False
log.addHandler(KubernetesEventHandler(sink=None, component="bench", host="node-1"))
for pod in make_pods(200 + count, "write", "default"):
    extra = {"involved": pod, "reason": "BackOff"}
    log.warning("Back-off pulling image %s", "busybox", extra=extra)
with ApiServerProcess(namespaces=["default"]) as server:
    broadcaster = recorder.EventBroadcaster(queue_length=200 + count)
    broadcaster.start_recording_to_sink(KubernetesEventSink.from_url(server.url, qps=0))
    runtime, pool = broadcaster._runtime, broadcaster._runtime._pool
    runtime._started = True  # no dispatcher thread: this thread does its work
    pool._spawn_writers = lambda: None  # nor writer threads: this thread writes, below
    def write(expected):
        made = 0
        while (job := pool._take_job()) is not None:
            pool._perform(*job)
            made += 1
        assert made == expected, (made, expected)
    runtime._handle_batch(kept[:200])
    write(200)  # warm: the connection open, every step taken once
    runtime._handle_batch(kept[200:])
    gc.collect()  # the collector's counts and heap as the work alone leaves them (see above)
    gc.freeze()
    sys.call_tracing(write, (count,))
"""


def instructions(script: str, *args: object) -> int:
    """Instructions executed inside ``sys.call_tracing`` by ``python -c script args`` (hash
    seed fixed), per callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += ["--collect-atstart=no", "--toggle-collect=sys_call_tracing"]
    command += [sys.executable, "-c", script, *map(str, args)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind failed: {done.stderr[-2000:]}")
    if found.group(1) == "0":
        raise RuntimeError(f"callgrind found no symbol sys_call_tracing in {sys.executable}")
    return int(found.group(1))


def per_unit(script: str, tree: str, settings: Sequence[object], count: int) -> list[float]:
    """Instructions per unit of work, for each setting, ``count`` units in one run each."""
    with ThreadPoolExecutor(2) as pool:  # the runs are independent: use both cores
        runs = pool.map(lambda setting: instructions(script, tree, setting, count), settings)
        return [total / count for total in runs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--occurrences", type=int, default=5000)
    parser.add_argument("--tree", default=TREE, help="the checkout to measure")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--only", choices=("caller", "dispatcher", "writer"))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        return 0
    tree = os.path.abspath(args.tree)
    print(f"tree: {tree}; Python {sys.version.split()[0]}; instructions counted by callgrind\n")
    if args.only in (None, "caller"):
        caller_section(tree, args.calls)
    if args.only in (None, "dispatcher"):
        dispatcher_section(tree, args.occurrences)
    if args.only in (None, "writer"):
        per_write = instructions(WRITER, tree, args.writes) / args.writes
        print(f"\nwriter, per write ({args.writes:,} distinct creates, local API server):")
        print(f"  a create, its answer read and fed back {per_write:>10,.0f}")
    return 0


def caller_section(tree: str, calls: int) -> None:
    """Instructions per log call: ours, QueueHandler, NullHandler."""
    modes = ("ours", "floor", "null")
    caller = dict(zip(modes, per_unit(CALLER, tree, modes, calls), strict=True))
    print(f"caller, per log call ({calls:,} calls, V1Pod involved):")
    labels = {"ours": "our handler", "floor": "QueueHandler", "null": "NullHandler"}
    for mode, label in labels.items():
        ratio = caller[mode] / caller["floor"]
        print(f"  {label:<14} {caller[mode]:>10,.0f}   {ratio:.2f}x the floor")
    own = caller["ours"] - caller["null"]
    floor_own = caller["floor"] - caller["null"]
    print(f"  beyond logging's own cost: ours {own:,.0f}, QueueHandler {floor_own:,.0f}\n")


def dispatcher_section(tree: str, occurrences: int) -> None:
    """Instructions per occurrence on the dispatcher, in short and long batches."""
    script = DISPATCHER.replace("EXPONENT", str(ZIPF_EXPONENT))
    script = script.replace("MAX", str(occurrences))
    print(f"dispatcher, per occurrence ({occurrences:,}, Zipf s={ZIPF_EXPONENT} over 1,000 pods):")
    batches = (128, 4096)
    for batch, value in zip(batches, per_unit(script, tree, batches, occurrences), strict=True):
        print(f"  batches of {batch:<5} {value:>10,.0f}")


if __name__ == "__main__":
    sys.exit(main())
