"""Robustness: what `weightguard scan` costs on hostile inputs (issues 15 and 16).

Three inputs, each built in code in a temp dir (``/dev/shm`` when it exists, so
the 100,000 files cost no disk), each scanned by ``weightguard scan`` in its own
child process:

* **gzip bomb**: about 6 MB of gzip that inflates to about 6 GB of zeros
  (six 1 GiB members, each compressed once and repeated: a multi-member gzip
  is one stream to ``gzip.decompress`` and to ``gunzip``);
* **safetensors header**: a 99 MB JSON header of 1.4 million tensor entries
  (1.2 GB of peak RSS before issue 15's fix);
* **100,000 files**: a directory of 100,000 one-byte files.

Each child reports its peak RSS (``VmHWM`` of ``/proc/self/status``, its own
peak; ``ru_maxrss`` is reported too, but Linux carries the parent's peak into
it across fork and exec, so the inputs are written as they are generated to
keep this process small; file-backed mapped pages count in both), the most descriptors it held open at once (``/proc/self/fd`` counted
every 2 ms by a sampling thread; the sampler's own listing counts one), its
wall time and exit code. Two baselines are measured the same way in the same
run: the child doing nothing (``python -c pass`` plus the sampler) and
``weightguard scan`` of one small JSON file. Every figure is printed with its
ratio to both.

Each child runs under an address-space cap (``--memory-cap-gib``, default 8)
so that a regression cannot take a shared machine's memory: a child that
meets it fails (MemoryError: exit 2, or killed: -9) instead.

    .venv/bin/python benchmarks/robustness.py [--files 100000] [--header-mb 99] [--bomb-gib 6] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in the child: sample /proc/self/fd from a thread, run the CLI in-process, report.
RUNNER = r"""
import json, os, resource, sys, threading, time
report, *argv = sys.argv[1:]
state = {"fds": 0, "stop": False}
def sample():
    while not state["stop"]:
        try:
            state["fds"] = max(state["fds"], len(os.listdir("/proc/self/fd")))
        except OSError:
            pass
        time.sleep(0.002)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
start = time.perf_counter()
code = 0
if argv:
    from weightguard.cli import main
    sys.argv = ["weightguard", *argv]
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
wall = time.perf_counter() - start
state["stop"] = True
sampler.join()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with open("/proc/self/status") as fh:
    hwm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
with open(report, "w") as fh:
    json.dump({"rss": hwm, "maxrss": maxrss, "fds": state["fds"], "wall": wall, "code": code}, fh)
"""


def scratch_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def build_gzip_bomb(path: Path, gib: int) -> None:
    # One member of 1 GiB of zeros, compressed once, written `gib` times (a valid multi-member gzip).
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
    block = bytes(16 << 20)
    member = b"".join(comp.compress(block) for _ in range(64)) + comp.flush()
    with path.open("wb") as fh:
        for _ in range(gib):
            fh.write(member)


def build_safetensors_header(path: Path, megabytes: int) -> int:
    # Written as it is generated: this process stays small (its size would not matter to the
    # children's VmHWM, but it would to their ru_maxrss, which Linux carries over fork and exec).
    target = megabytes * 1_000_000
    with path.open("wb") as fh:
        fh.write(b"\0" * 8 + b"{")
        size, i = 2, 0
        while size < target:
            part = f'{"," if i else ""}"t{i:08d}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}'.encode()
            fh.write(part)
            size += len(part)
            i += 1
        fh.write(b"}")
        fh.write(bytes(i))
        fh.seek(0)
        fh.write(struct.pack("<Q", size))
    return i


def build_many_files(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        sub = folder / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir()
        fd = os.open(sub / f"f{i:06d}.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x")
        os.close(fd)


def measure(work: Path, args: list[str], timeout: float, cap_gib: float) -> dict[str, float]:
    report = work / "child-report.json"
    report.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, "-c", RUNNER, str(report), *args],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (int(cap_gib * 2**30),) * 2),
        )
    except subprocess.TimeoutExpired:
        return {"rss": float("nan"), "fds": float("nan"), "wall": time.perf_counter() - start, "code": -1}
    if not report.exists():  # killed (out of memory?) before it could report
        return {"rss": float("nan"), "fds": float("nan"), "wall": time.perf_counter() - start, "code": -9}
    return json.loads(report.read_text())


def scan_args(target: Path, out: Path) -> list[str]:
    return ["scan", str(target), "--format", "json", "--output", str(out)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--header-mb", type=int, default=99)
    parser.add_argument("--bomb-gib", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed for each scan")
    parser.add_argument("--memory-cap-gib", type=float, default=8.0, help="address-space cap of each child")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wg-robustness-", dir=scratch_root()) as tmp:
        work = Path(tmp)
        out = work / "report.json"
        small = work / "config.json"
        small.write_text('{"hidden_size": 16}\n')
        bomb, header, many = work / "bomb.gz", work / "huge-header.safetensors", work / "many"

        started = time.perf_counter()
        build_gzip_bomb(bomb, args.bomb_gib)
        tensors = build_safetensors_header(header, args.header_mb)
        build_many_files(many, args.files)
        print(f"inputs built in {time.perf_counter() - started:.1f} s under {scratch_root()}")

        runs = {
            "python -c pass (baseline)": measure(work, [], args.timeout, args.memory_cap_gib),
            "scan one small file (baseline)": measure(work, scan_args(small, out), args.timeout, args.memory_cap_gib),
            f"gzip bomb ({bomb.stat().st_size / 1e6:.1f} MB -> {args.bomb_gib} GiB)": measure(
                work, scan_args(bomb, out), args.timeout, args.memory_cap_gib
            ),
            f"safetensors header ({args.header_mb} MB, {tensors} tensors)": measure(
                work, scan_args(header, out), args.timeout, args.memory_cap_gib
            ),
            f"{args.files} files": measure(work, scan_args(many, out), args.timeout, args.memory_cap_gib),
        }

    bare, tiny = runs["python -c pass (baseline)"], runs["scan one small file (baseline)"]
    print(
        f"\n{'input':44} {'peak RSS':>10} {'x pass':>7} {'x small':>8} {'max fds':>8} {'x small':>8} {'wall':>8} {'x small':>8} {'exit':>5}"
    )
    for name, r in runs.items():
        print(
            f"{name:44} {r['rss'] / 2**20:8.0f} MiB {r['rss'] / bare['rss']:6.1f}x {r['rss'] / tiny['rss']:7.1f}x"
            f" {r['fds']:8.0f} {r['fds'] / tiny['fds']:7.1f}x {r['wall']:7.2f}s {r['wall'] / tiny['wall']:7.1f}x"
            f" {r['code']:5.0f}"
        )
    maxrss = ", ".join(f"{r.get('maxrss', float('nan')) / 2**20:.0f}" for r in runs.values())
    print(f"\nru_maxrss of each child, same order (MiB): {maxrss}")
    print("\nexit: 0 approved, 1 rejected, 2 incomplete (a limit), -1 timed out, -9 killed before reporting")


if __name__ == "__main__":
    main()
