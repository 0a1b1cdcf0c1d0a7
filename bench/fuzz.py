"""A fuzz campaign against mvactors, as a hostile user would run it.

    python bench/fuzz.py --budget-s 900 --seed 1

Cases (see tests/fuzz/harness.py): mutated snapshots (truncation, bit flips,
byte overwrites, splices, each with and without the size and CRC recomputed),
random nested values both ways with exact-equality checks, and guest abuse
(loops under gas and without, recursion, allocation to OOM, many property
names, re-entrancy, close/restore inside calls, raising host functions,
savepoint/rollback, hibernate/wake, arguments too large for the heap), and heaps
built up to the limit (objects of up to 1,100 properties, arrays, strings and Uint8Arrays at
their size limits, closure chains) that must survive collection, snapshot and restore.

Each case runs in its own child process (forked from this one once the
engine and the guests are ready): a child that has used CASE_TIMEOUT seconds
of CPU (or CASE_WALL_LIMIT of wall time: a loaded machine starves children)
without a result is a hang, one that dies without reporting is a crash.  Every case is derived from
(seed, case number), so a failure is reproduced with ``--replay N``.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import select
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fuzz"))

import harness

KINDS = ("snapshot", "value", "abuse", "snapshot", "value", "abuse", "actor", "heap")


def run_case(seed: int, number: int) -> harness.Outcome:
    """Case ``number`` of the campaign with ``seed``: what it is depends on nothing else."""
    rng = random.Random(f"{seed}/{number}")
    kind = KINDS[number % len(KINDS)]
    if kind == "snapshot":
        base = harness.snapshot(rng.choice(["base", "abuse", "bystander"]))
        how = rng.choice(harness.MUTATIONS)
        data = harness.mutate(rng, base, how, fix=rng.random() < 0.6)
        return harness.snapshot_case(data)
    if kind == "value":
        return harness.value_case(harness.random_value(rng))
    if kind == "actor":
        return harness.actor_case(rng)
    if kind == "heap":
        return harness.heap_case(rng)
    return harness.abuse_case(rng, rng.choice(harness.ABUSES))


def describe(seed: int, number: int) -> str:
    rng = random.Random(f"{seed}/{number}")
    kind = KINDS[number % len(KINDS)]
    if kind == "snapshot":
        rng.choice(["base", "abuse", "bystander"])
        return f"snapshot/{rng.choice(harness.MUTATIONS)}"
    if kind == "abuse":
        return f"abuse/{rng.choice(harness.ABUSES)}"
    return kind


def cpu_seconds(pid: int) -> float:
    """CPU time a running child has used (user + system), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_child(seed: int, number: int) -> tuple[str, str]:
    """Fork, run the case in the child, and classify what came back (or did not)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        try:
            outcome = run_case(seed, number)
            message = f"{outcome.kind}\t{outcome.detail}".encode()
        except BaseException as exc:  # the harness itself failed: count it as unclean
            message = f"unclean\tharness: {type(exc).__name__}: {exc}".encode()
        os.write(write_fd, message[:4000])
        os._exit(0)
    os.close(write_fd)
    started = time.monotonic()
    chunks = []
    while True:
        waited = time.monotonic() - started
        if waited >= harness.CASE_TIMEOUT:
            used = cpu_seconds(pid)
            if used >= harness.CASE_TIMEOUT or waited >= harness.CASE_WALL_LIMIT:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(read_fd)
                return "hang", f"no result after {used:.1f} s of CPU ({waited:.0f} s)"
        ready, _, _ = select.select([read_fd], [], [], 1.0)
        if ready:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    if not text:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        return "crash", f"the child died ({how}) without a result"
    kind, _, detail = text.partition("\t")
    return kind, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=60.0, help="wall-clock seconds to spend")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replay", type=int, help="run only case N of the seed, in this process, and print it")
    args = parser.parse_args()
    for name in ("base", "abuse", "actor", "bystander", "heap"):
        harness.snapshot(name)  # compile once, before forking
    harness.bystanders_ok()  # the bystander VM exists before every case
    if args.replay is not None:
        print(describe(args.seed, args.replay), run_case(args.seed, args.replay))
        return
    counts: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    started = time.monotonic()
    number = 0
    while time.monotonic() - started < args.budget_s:
        kind, detail = in_child(args.seed, number)
        counts[kind] += 1
        if kind not in ("ok", "clean") and len(examples[kind]) < 5:
            examples[kind].append(f"case {number} ({describe(args.seed, number)}): {detail}")
        number += 1
    elapsed = time.monotonic() - started
    print(f"seed {args.seed}, budget {args.budget_s:g} s, {elapsed:.0f} s used, {number} cases\n")
    print("| cases | ok | clean errors | unclean errors | wrong values | hangs | crashes |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {number} | {counts['ok']} | {counts['clean']} | {counts['unclean']} | {counts['wrong']} "
          f"| {counts['hang']} | {counts['crash']} |")
    for kind in ("unclean", "wrong", "hang", "crash"):
        for line in examples.get(kind, []):
            print(f"{kind}: {line}  (replay: bench/fuzz.py --seed {args.seed} --replay {line.split()[1]})")
    bad = counts["unclean"] + counts["wrong"] + counts["hang"] + counts["crash"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
