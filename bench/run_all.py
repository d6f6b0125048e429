"""Run every benchmark and print every table: the one documented command (``./dev bench``).

    python bench/run_all.py [--quick] [--no-dragonk8s] [--memory-events N] [--instructions]

Sections, each a script of its own in bench/ run in a fresh process (so that one section's
threads and memory never weigh on another's), each printing a small table and its ratios
against a baseline measured in the same run:

1. app_thread_cost.py     cost on the application's thread, vs QueueHandler, no handler and
                          a synchronous create
2. throughput.py          emit-to-server events/s: distinct, one hot object, Zipf mix
3. write_amplification.py spam: API writes and final count vs client-go's algorithm
4. memory.py              RSS from 10,000 to 1,000,000 events over distinct objects
5. correlator_rate.py     correlate() calls/s, and dragonk8s's port in its own virtualenv
6. profile_paths.py       where the time goes (cProfile; CPU per event per thread)
7. runtime.py             the background runtime: threads idle and under load, exit against
                          a hanging server, a batch job's events at exit, RSS and close()
                          after --memory-events distinct objects at the default rate
8. perf_targets.py        issue 15's table: every row next to its target, met or not
9. fleet.py               10 and 30 replica processes in one incident, with and without the
                          EventRateLimit emulation and a restart: occurrences logged vs
                          counted, events, writes per occurrence, 429s, 409s, drain time,
                          against one create per record (Kopf's way)
10. instructions.py        with --instructions only (three minutes under valgrind): the
                          caller's and the dispatcher's instructions, which a noisy machine
                          cannot disturb

The dragonk8s comparison needs a virtualenv of its own under /tmp (never the project's):
it is made on first use with ``kubernetes>=37,<38``, ``dragonk8s`` and the two modules
dragonk8s imports without declaring them (``six``, ``pytz``), and kept for later runs.
Figures go to docs/performance.md by hand, with the machine line printed first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import machine

HERE = os.path.dirname(os.path.abspath(__file__))
DRAGONK8S_VENV = "/tmp/k8s-logging-events-bench/dragonk8s-venv"
DRAGONK8S_PACKAGES = ("kubernetes>=37,<38", "dragonk8s", "six", "pytz")


def dragonk8s_python() -> tuple[str, str]:
    """The dragonk8s virtualenv's python, made if missing; or ("", why not)."""
    python = os.path.join(DRAGONK8S_VENV, "bin", "python")
    marker = os.path.join(DRAGONK8S_VENV, ".installed")
    if os.path.exists(marker):
        return python, ""
    print(f"(making the dragonk8s virtualenv {DRAGONK8S_VENV}: {', '.join(DRAGONK8S_PACKAGES)})")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", DRAGONK8S_VENV], check=True, capture_output=True
        )
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *DRAGONK8S_PACKAGES,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        lines = [line for line in str(detail).splitlines() if "WARNING" not in line]
        return "", f"dragonk8s did not install: {(lines or ['?'])[-1]}"
    with open(marker, "w") as done:
        done.write("ok\n")
    return python, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--no-dragonk8s", action="store_true")
    parser.add_argument("--memory-events", type=int, default=0)
    parser.add_argument("--instructions", action="store_true", help="add instructions.py")
    args = parser.parse_args()

    memory_events = args.memory_events or (100_000 if args.quick else 1_000_000)
    sections: list[tuple[str, list[str]]] = [
        (
            "1. Cost on the application's thread",
            ["app_thread_cost.py"] + (["--rounds", "2", "--block", "1000"] if args.quick else []),
        ),
        (
            "2. Throughput from emit to the server",
            ["throughput.py"]
            + (["--distinct", "1000", "--hot", "5000", "--zipf", "5000"] if args.quick else []),
        ),
        ("3. Write amplification under spam", ["write_amplification.py"]),
        ("4. Memory", ["memory.py", "--events", str(memory_events)]),
    ]
    correlator_args = ["correlator_rate.py"] + (["--calls", "2000"] if args.quick else [])
    if args.no_dragonk8s:
        correlator_args += ["--dragonk8s-skipped", "--no-dragonk8s was given"]
    else:
        python, why_not = dragonk8s_python()
        if python:
            correlator_args += ["--dragonk8s-python", python]
        else:
            correlator_args += ["--dragonk8s-skipped", why_not]
    sections.append(("5. Correlator alone", correlator_args))
    sections.append(
        (
            "6. Profile: where the time goes",
            ["profile_paths.py"] + (["--calls", "5000", "--events", "1000"] if args.quick else []),
        )
    )
    sections.append(("7. The runtime", ["runtime.py", "--objects", str(memory_events)]))
    sections.append(
        (
            "8. Performance targets (issue 15)",
            ["perf_targets.py"]
            + (
                ["--calls", "5000", "--rounds", "1", "--distinct", "1000", "--writes", "500"]
                if args.quick
                else []
            ),
        )
    )
    fleet = ["fleet.py"] + (["--quick"] if args.quick else [])
    sections.append(("9. A fleet in one incident", fleet))
    if args.instructions:
        sections.append(("10. Instructions (callgrind)", ["instructions.py"]))

    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    started = time.perf_counter()
    failed: list[str] = []
    timings: list[tuple[str, float]] = []
    for title, command in sections:
        print(f"\n== {title} ==  (bench/{' '.join(command)})\n", flush=True)
        section_started = time.perf_counter()
        done = subprocess.run([sys.executable, os.path.join(HERE, command[0]), *command[1:]])
        timings.append((title, time.perf_counter() - section_started))
        if done.returncode != 0:
            failed.append(title)
            print(f"!! {title} failed with exit code {done.returncode}", flush=True)
    total = time.perf_counter() - started
    print("\n== Wall time ==\n")
    for title, seconds in timings:
        print(f"  {title:<42}{seconds:>7.1f} s")
    print(f"  {'total':<42}{total:>7.1f} s")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
