"""Issue 15: a long differential fuzzing campaign of weightguard against the real loaders.

    python benchmarks/differential_fuzz.py --files 20000 [--seed S] [--jobs J] [--out DIR]

File ``i`` is a mutation (``tests/differential/mutate.py``) of a seed (``tests/differential/seeds.py``)
chosen by ``random.Random(f"{seed}:{i}")``, so any file can be rebuilt from (seed, i). Each job is a
worker process that scans its files in-process with the public API (default policy), each file
guarded by a timer (``--timeout`` seconds), and sends every approved file to its own oracle
(``tests/differential/oracle.py``). A worker whose peak RSS grows by more than 1 GiB reports the
file and is restarted, as is a worker that dies. Printed at the end: files tried, files/s,
approvals, approvals the oracle contradicts, uncaught exceptions in weightguard, files over the
time limit, max RSS. Every contradiction (and every uncaught exception) is saved under ``--out``
with the seed, index, seed file and mutation steps that produced it, ready to become a regression
fixture. atheris is not used (not installed); the mutator is deterministic instead.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_RSS_LIMIT_KB = 1 << 20  # 1 GiB over the worker's baseline
_EXIT_RSS = 3


class _FileTimeoutError(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _FileTimeoutError


def _save(out: Path, kind: str, index: int, name: str, data: bytes, record: dict[str, Any]) -> None:
    folder = out / kind
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{index:07d}-{Path(name).name or 'file'}"
    (folder / stem).write_bytes(data)
    (folder / f"{stem}.json").write_text(json.dumps(record, indent=1, default=str))


def _generate(
    seed_value: int, index: int, benign: list[Any], blocked: list[Any], mutate: Any
) -> tuple[Any, bytes, str, list[str]]:
    """The file of campaign ``seed_value`` at ``index``: the same bytes in a worker and in the parent."""
    rng = random.Random(f"{seed_value}:{index}")
    # Two thirds benign seeds (approvals are what the oracle checks), one third threat corpus.
    seed = rng.choice(benign if rng.random() < 0.67 else blocked)
    data, name, steps = mutate(rng, seed.data, seed.name)
    return seed, data, name, steps


def _save_killer(args: argparse.Namespace, index: int) -> None:
    """Regenerate and keep the file that killed a scan worker (a crash of the scanner itself)."""
    from tests.differential.mutate import mutate
    from tests.differential.seeds import all_seeds

    seeds = all_seeds()
    benign = [s for s in seeds if s.family != "corpus-blocked"]
    blocked = [s for s in seeds if s.family == "corpus-blocked"]
    seed, data, name, steps = _generate(args.seed, index, benign, blocked, mutate)
    record = {"seed": args.seed, "index": index, "seed_file": seed.name, "steps": steps, "name": name}
    _save(Path(args.out), "crashes", index, name, data, record)


def run_worker(args: argparse.Namespace) -> None:
    """Scan files ``start, start+stride, ...`` and print one JSON line per file."""
    from tests.differential.mutate import mutate
    from tests.differential.oracle import Oracle
    from tests.differential.seeds import all_seeds, marker_path
    from weightguard.api import scan
    from weightguard.policy.load import load_policy

    warnings.simplefilter("ignore")  # zipfile's duplicate-name notices are the point of some mutations
    seeds = all_seeds()
    benign = [s for s in seeds if s.family != "corpus-blocked"]
    blocked = [s for s in seeds if s.family == "corpus-blocked"]
    policy = load_policy(None)
    out = Path(args.out)
    signal.signal(signal.SIGALRM, _alarm)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Oracle([marker_path()], timeout=args.timeout) as oracle, tempfile.TemporaryDirectory() as tmp:
        for index in range(args.start, args.files, args.stride):
            seed, data, name, steps = _generate(args.seed, index, benign, blocked, mutate)
            folder = Path(tmp) / str(index)
            folder.mkdir()
            path = folder / name
            path.write_bytes(data)
            record: dict[str, Any] = {"seed": args.seed, "index": index, "seed_file": seed.name,
                                      "family": seed.family, "steps": steps, "name": name}  # fmt: skip
            started = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
            verdict: str
            try:
                verdict = scan([path], policy).verdict
            except _FileTimeoutError:
                verdict = "timeout"
            except Exception as error:  # noqa: BLE001 - an escaping exception is what we count
                verdict = "exception"
                record["exception"] = f"{type(error).__name__}: {error}"[:300]
                record["traceback"] = traceback.format_exc()[-2000:]
                _save(out, "exceptions", index, name, data, record)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            record["verdict"], record["scan_s"] = verdict, round(time.monotonic() - started, 4)
            if verdict == "approved":
                checked = time.monotonic()
                result = oracle.check(path)
                record["oracle_s"] = round(time.monotonic() - checked, 4)
                record["contradicts"] = result.contradicts
                record["oracle_incomplete"] = list(result.incomplete)
                if result.contradicts:
                    record["oracle"] = result.to_json()
                    _save(out, "contradictions", index, name, data, record)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            record["rss_kb"], record["oracle_rss_kb"] = rss, oracle.stats.max_rss_kb
            record["rss_base_kb"] = baseline
            for bulky in ("traceback", "oracle"):
                record.pop(bulky, None)
            print(json.dumps(record), flush=True)
            path.unlink()
            folder.rmdir()
            if rss - baseline > _RSS_LIMIT_KB:
                sys.exit(_EXIT_RSS)


def _count(
    record: dict[str, Any],
    args: argparse.Namespace,
    totals: collections.Counter[str],
    by_class: collections.Counter[str],
    slow: list[int],
) -> None:
    totals["files"] += 1
    totals[f"verdict:{record['verdict']}"] += 1
    if record.get("contradicts"):
        totals["contradictions"] += 1
        by_class[f"{record['family']} / {record['steps'][0].split('(')[0]}"] += 1
    if record["scan_s"] + record.get("oracle_s", 0) > args.timeout or record["verdict"] == "timeout":
        slow.append(record["index"])
    totals["max_rss_kb"] = max(totals["max_rss_kb"], record["rss_kb"], record.get("oracle_rss_kb", 0))
    totals["scan_rss_kb"] = max(totals["scan_rss_kb"], record["rss_kb"])
    totals["scan_growth_kb"] = max(totals["scan_growth_kb"], record["rss_kb"] - record.get("rss_base_kb", 0))
    totals["oracle_rss_kb"] = max(totals["oracle_rss_kb"], record.get("oracle_rss_kb", 0))


def _spawn(args: argparse.Namespace, start: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "--worker", "--start", str(start), "--stride", str(args.jobs),
               "--files", str(args.files), "--seed", str(args.seed), "--out", str(args.out),
               "--timeout", str(args.timeout)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, cwd=REPO, env=env)


def run_campaign(args: argparse.Namespace) -> int:
    """Run ``--jobs`` workers over ``--files`` files and print the figures."""
    started = time.monotonic()
    totals: collections.Counter[str] = collections.Counter()
    by_class: collections.Counter[str] = collections.Counter()
    slow: list[int] = []
    crashed: list[int] = []
    max_rss = 0
    workers = {_spawn(args, j): j for j in range(min(args.jobs, args.files))}
    last: dict[subprocess.Popen[bytes], int] = {p: start - args.jobs for p, start in workers.items()}
    buffers: dict[subprocess.Popen[bytes], bytes] = {p: b"" for p in workers}
    while workers:
        ready, _, _ = select.select([p.stdout for p in workers if p.stdout is not None], [], [], 5.0)
        for proc in list(workers):
            if proc.stdout not in ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 1 << 20) if proc.stdout else b""
            buffers[proc] += chunk
            *lines, buffers[proc] = buffers[proc].split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    _count(json.loads(line), args, totals, by_class, slow)
                    last[proc] = json.loads(line)["index"]
                    max_rss = max(max_rss, totals["max_rss_kb"])
                    if totals["files"] % 1000 == 0:
                        rate = totals["files"] / (time.monotonic() - started)
                        print(f"... {totals['files']} files, {rate:.1f}/s, {totals['contradictions']} contradictions",
                              file=sys.stderr, flush=True)  # fmt: skip
            if chunk:
                continue
            code = proc.wait()
            workers.pop(proc)
            done = last.pop(proc)
            if code != 0:
                totals["worker_restarts"] += 1
                if code != _EXIT_RSS:  # the file after the last one reported killed the worker
                    crashed.append(done + args.jobs)
                    done += args.jobs
                    _save_killer(args, done)
                print(f"worker exited {code} after index {done}", file=sys.stderr)
                if done + args.jobs < args.files:
                    new = _spawn(args, done + args.jobs)
                    workers[new], last[new], buffers[new] = done + args.jobs, done, b""
    elapsed = time.monotonic() - started
    figures = {
        "files tried": totals["files"],
        "files/s": round(totals["files"] / elapsed, 1),
        "approvals": totals["verdict:approved"],
        "approvals the oracle contradicts": totals["contradictions"],
        "uncaught exceptions in weightguard": totals["verdict:exception"],
        "files over the time limit": len(slow),
        "max RSS (MiB)": max_rss // 1024,
        # The scan worker holds torch and the seeds (its start); its growth is what scanning cost.
        "scan worker peak RSS (MiB)": totals["scan_rss_kb"] // 1024,
        "scan worker growth over its start (MiB)": totals["scan_growth_kb"] // 1024,
        "oracle worker peak RSS (MiB)": totals["oracle_rss_kb"] // 1024,
        "worker restarts": totals["worker_restarts"],
        "files that killed a worker": crashed,
        "verdicts": {k.split(":", 1)[1]: v for k, v in totals.items() if k.startswith("verdict:")},
        "contradictions by seed family / first mutation": dict(by_class.most_common()),
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(figures, indent=1))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "figures.json").write_text(json.dumps(figures, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="differential-out")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stride", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0
    return run_campaign(args)


if __name__ == "__main__":
    sys.exit(main())
