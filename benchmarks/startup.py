"""Start-up time of the CLI against ``python -c pass`` and picklescan, measured side by side.

Pre-commit hooks and CI steps start weightguard once per file or per job, so a
second of imports is paid every time. This runs, in one process and one run,
each of:

* ``python -c pass`` (the interpreter and ``site`` alone: the floor);
* ``weightguard --version``, ``weightguard --help``;
* ``weightguard scan small.pkl`` (a small benign pickle built in a temp dir);
* ``picklescan -p small.pkl`` on the same file (the ``benchmarks`` extra
  installs it): the lightest pickle scanner people compare us to.

Each command runs ``--runs`` times (default 10) after one untimed warm-up run,
alternating between commands so that load from other processes on the machine
spreads over all of them. It prints the best and the median wall time, the
median CPU time (user + system of the child, which other processes' load
disturbs far less than wall time), and the ratios of the best times against
``python -c pass`` and against picklescan; then whether the goals hold
(``--version`` <= 0.15 s, ``scan`` <= 0.25 s, best wall time).

Bytecode: the children run with ``PYTHONPYCACHEPREFIX`` set to a temp dir and
bytecode writing on (whatever ``PYTHONDONTWRITEBYTECODE`` says here), so the
warm-up run compiles every module once and the timed runs load ``.pyc`` files,
as an installed package does. ``--cold`` measures the package without
bytecode instead (``PYTHONDONTWRITEBYTECODE=1``, as in this project's dev
environment): the ``weightguard`` folder is copied without ``__pycache__`` to a
temp dir that goes first on ``PYTHONPATH``, so its modules are compiled from
source on every run while the installed libraries load their own ``.pyc`` files.

weightguard runs through the console script next to this interpreter with this
checkout first on ``PYTHONPATH``, so it measures the code of this checkout
(``--repo`` measures another one, e.g. a checkout of ``main`` for a before/after).

    .venv/bin/python benchmarks/startup.py [--runs 10] [--cold] [--repo PATH]
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VERSION_GOAL_S = 0.15
SCAN_GOAL_S = 0.25


@dataclass(frozen=True)
class Timing:
    """The timed runs of one command."""

    label: str
    wall: list[float]
    cpu: list[float]

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def _script(name: str) -> list[str]:
    """The console script ``name`` next to this interpreter, else ``python -m``."""
    path = BIN / name
    if path.exists():
        return [str(path)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", name]


def _run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _env(repo: Path, cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def measure(commands: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, Timing]:
    """Run every command once untimed, then ``runs`` timed rounds, commands interleaved."""
    walls: dict[str, list[float]] = {label: [] for label in commands}
    cpus: dict[str, list[float]] = {label: [] for label in commands}
    for argv in commands.values():
        _run_once(argv, env)
    for _ in range(runs):
        for label, argv in commands.items():
            wall, cpu = _run_once(argv, env)
            walls[label].append(wall)
            cpus[label].append(cpu)
    return {label: Timing(label, walls[label], cpus[label]) for label in commands}


def report(timings: dict[str, Timing]) -> bool:
    """Print the table and the goals; True when both goals hold."""
    floor, picklescan = timings["python -c pass"], timings["picklescan -p small.pkl"]
    print(f"{'command':<28} {'best s':>7} {'median s':>9} {'cpu s':>6} {'x pass':>7} {'x picklescan':>13}")
    for t in timings.values():
        print(
            f"{t.label:<28} {t.best:7.3f} {t.median:9.3f} {t.cpu_median:6.3f}"
            f" {t.best / floor.best:7.1f} {t.best / picklescan.best:13.2f}"
        )
    version, scan = timings["weightguard --version"].best, timings["weightguard scan small.pkl"].best
    ok_version, ok_scan = version <= VERSION_GOAL_S, scan <= SCAN_GOAL_S
    print(f"goal --version <= {VERSION_GOAL_S} s: {'met' if ok_version else 'NOT met'} ({version:.3f} s best)")
    print(f"goal scan small.pkl <= {SCAN_GOAL_S} s: {'met' if ok_scan else 'NOT met'} ({scan:.3f} s best)")
    return ok_version and ok_scan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold", action="store_true", help="no bytecode for the checkout (compiled each run)")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to measure (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wg-startup-") as tmp:
        small = Path(tmp) / "small.pkl"
        # A benign pickle of plain containers: what a config or a tiny state dict looks like to a scanner.
        small.write_bytes(pickle.dumps({"weights": [0.5, -1.25, 3.0], "name": "tiny", "step": 7}, protocol=4))
        weightguard = _script("weightguard")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "weightguard --version": [*weightguard, "--version"],
            "weightguard --help": [*weightguard, "--help"],
            "weightguard scan small.pkl": [*weightguard, "scan", str(small)],
            "picklescan -p small.pkl": [*_script("picklescan"), "-p", str(small)],
        }
        cache = None if args.cold else Path(tmp) / "pycache"
        print(
            f"{args.repo}: {args.runs} runs each, {os.cpu_count()} CPUs, bytecode cache: {'none (--cold)' if cache is None else 'warm'}"
        )
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        repo = args.repo.resolve()
        if args.cold:  # a copy without bytecode: nothing compiled earlier is read
            shutil.copytree(
                repo / "weightguard", Path(tmp) / "src" / "weightguard", ignore=shutil.ignore_patterns("__pycache__")
            )
            repo = Path(tmp) / "src"
        timings = measure(commands, args.runs, _env(repo, cache))
        print(f"load average at end:   {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0 if report(timings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
