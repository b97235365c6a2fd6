"""Scan speed: weightguard's static scan of a ~1 GB PyTorch checkpoint, against reading it once,
and side by side with picklescan and modelscan on the same file in the same run.

The scan must not read the tensor bytes, so its time should be a small fraction
of one sequential read of the file. picklescan and modelscan are measured only if
they are installed in this environment (they are not weightguard dependencies):

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -q -e '.[torch]' picklescan modelscan
    .venv-bench/bin/python benchmarks/scan_speed.py [--size-mb 1024] [--repeat 3]

The page cache is dropped from the comparison by warming it first: every tool
then works on cached pages, and the baseline is one full read from cache.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_checkpoint(path: Path, size_mb: int) -> None:
    import torch

    torch.manual_seed(0)
    n_tensors = 64
    per = max(1, size_mb * 2**20 // (4 * n_tensors))
    state = {f"layers.{i}.weight": torch.randn(per) for i in range(n_tensors)}
    state["config"] = {"hidden": 4096, "note": "benchmark"}  # a little metadata, like real checkpoints
    torch.save(state, path)


def read_once(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as fh:
        while fh.read(16 * 2**20):
            pass
    return time.perf_counter() - start


def time_it(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def weightguard_scan(path: Path) -> None:
    from weightguard.api import scan

    report = scan([path])
    if report.verdict != "approved":
        raise SystemExit(f"benchmark checkpoint was not approved: {report.reasons}")


def weightguard_recorded(path: Path) -> None:
    """The scan as verify runs it: through a recording source, so that hashing can check its reads."""
    from weightguard.api import file_blocking, make_scanner
    from weightguard.integrity.binding import scan_recorded
    from weightguard.policy.load import load_builtin
    from weightguard.sources.local import LocalSource

    loaded = load_builtin("default")
    scanner = make_scanner(loaded)
    for artifact in LocalSource(path).collect().files:
        scan, _ = scan_recorded(scanner.scan, artifact)
        if file_blocking(scan, loaded):
            raise SystemExit("benchmark checkpoint was not approved (recorded scan)")


def weightguard_cli(path: Path) -> None:
    exe = shutil.which("weightguard") or str(Path(sys.executable).with_name("weightguard"))
    done = subprocess.run([exe, "scan", str(path), "--format", "json"], capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"weightguard CLI did not approve the benchmark checkpoint: {done.stderr[-500:]!r}")


def picklescan_scan(path: Path) -> None:
    from picklescan.scanner import scan_file_path

    scan_file_path(str(path))


def modelscan_scan(path: Path) -> None:
    exe = shutil.which("modelscan") or str(Path(sys.executable).with_name("modelscan"))
    subprocess.run([exe, "-p", str(path)], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pytorch_model.bin"
        build_checkpoint(path, args.size_mb)
        size = path.stat().st_size
        read_once(path)  # warm the page cache
        baseline = time_it(lambda: read_once(path), args.repeat)
        print(f"checkpoint: {size / 2**20:.0f} MiB, {path.name}")
        print(f"read once (baseline):   {baseline * 1000:8.1f} ms  ({size / baseline / 2**30:.2f} GiB/s)")
        tools = [
            ("weightguard scan (API)", weightguard_scan),
            ("weightguard recorded", weightguard_recorded),
            ("weightguard (CLI)", weightguard_cli),
        ]
        try:
            import picklescan  # noqa: F401

            tools.append(("picklescan", picklescan_scan))
        except ImportError:
            print("picklescan: not installed here (pip install picklescan in the benchmark env)")
        if shutil.which("modelscan") or Path(sys.executable).with_name("modelscan").exists():
            tools.append(("modelscan (CLI)", modelscan_scan))
        else:
            print("modelscan: not installed here (pip install modelscan in the benchmark env)")
        for name, fn in tools:
            fn(path)  # warm imports
            seconds = time_it(lambda fn=fn: fn(path), args.repeat)
            print(f"{name:<22}  {seconds * 1000:8.1f} ms  ratio to one read: {seconds / baseline:.3f}")


if __name__ == "__main__":
    main()
