"""Conversion speed and memory: weightguard's converter against the naive ``torch.load`` + ``save_file``.

Builds a sharded pickle-era checkpoint (default 4 shards of ~256 MiB of random
float32 tensors, fixed seed, with a ``pytorch_model.bin.index.json`` and a
``config.json``) in a temp dir, then converts it twice in the same run:

* **weightguard**: ``convert_model`` exactly as ``weightguard convert`` runs it
  (private copy, scan under the default policy, restricted load, streaming
  write, reload-and-compare proof, manifest digests);
* **naive**: for each shard, ``torch.load(weights_only=True)`` of the whole file,
  then ``safetensors.torch.save_file`` (no scan, no proof, no index).

Each approach runs in its own child process, so the two peak-RSS figures do not
contaminate each other. The child reports its wall time for the work only
(imports excluded), its RSS after the imports (the baseline: Python, torch and
safetensors themselves take a few hundred MiB) and its peak RSS (``VmHWM`` from
``/proc/self/status``, which counts file-backed mapped pages as well as
anonymous memory). The goal is judged on the increment over the baseline:
peak - baseline <= 1.3x the largest shard. Both approaches read a warm page
cache (the checkpoint was just written and is read once before each run).

    .venv/bin/python benchmarks/convert_speed.py [--shard-mb 256] [--shards 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/self/status has no {field}")


def build_checkpoint(root: Path, shard_mb: int, shards: int) -> int:
    """Write a sharded ``pytorch_model-*.bin`` checkpoint; return the largest shard's size in bytes."""
    import torch

    torch.manual_seed(20261124)
    side = 2048  # 2048 x 2048 float32 = 16 MiB per tensor
    per_shard = max(1, shard_mb * MIB // (side * side * 4))
    weight_map: dict[str, str] = {}
    largest = 0
    for s in range(shards):
        name = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        state = {f"layers.{s}.w{i}": torch.randn(side, side) for i in range(per_shard)}
        state[f"layers.{s}.bias"] = torch.randn(side)
        torch.save(state, root / name)
        weight_map.update(dict.fromkeys(state, name))
        largest = max(largest, (root / name).stat().st_size)
    total = sum(p.stat().st_size for p in root.glob("*.bin"))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (root / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    (root / "config.json").write_text('{"model_type": "bench"}\n')
    return largest


def _warm(root: Path) -> None:
    for path in sorted(root.iterdir()):
        with path.open("rb") as fh:
            while fh.read(8 * MIB):
                pass


def child_weightguard(src: Path, out: Path) -> dict[str, float]:
    """Run weightguard's converter the way the CLI does; return the figures."""
    # Imported before the baseline is read: run_conversion imports these lazily, and the
    # baseline must hold the interpreter and its libraries, not the work.
    import weightguard.api
    import weightguard.convert.run
    import weightguard.pipeline  # noqa: F401
    from weightguard.cli.convert import run_conversion
    from weightguard.policy.load import load_builtin

    loaded = load_builtin("default")
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    result = run_conversion(str(src), out, loaded)
    seconds = time.perf_counter() - start
    if not result.converted:
        raise SystemExit(f"weightguard refused the benchmark checkpoint: {result.findings}")
    compared = sum(f.compared for f in result.proof.files)
    return {"seconds": seconds, "baseline_kib": baseline, "peak_kib": _status_kib("VmHWM"), "tensors": compared}


def child_naive(src: Path, out: Path) -> dict[str, float]:
    """``torch.load`` each whole shard, then ``save_file`` it; return the figures."""
    import torch
    from safetensors.torch import save_file

    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    tensors = 0
    for shard in sorted(src.glob("pytorch_model-*.bin")):
        state = torch.load(shard, map_location="cpu", weights_only=True)
        name = shard.name.replace("pytorch_model", "model").replace(".bin", ".safetensors")
        save_file(state, out / name, metadata={"format": "pt"})
        tensors += len(state)
        del state
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "baseline_kib": baseline, "peak_kib": _status_kib("VmHWM"), "tensors": tensors}


def run_child(approach: str, src: Path, out: Path) -> dict[str, float]:
    """Run one approach in a fresh interpreter and parse its figures."""
    _warm(src)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", approach, str(src), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{approach} failed:\n{proc.stderr[-4000:]}")
    figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out)
    return figures


def main() -> None:
    """Parse arguments, build the checkpoint, run both approaches, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard-mb", type=int, default=256)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per approach, interleaved; best wall time kept")
    parser.add_argument("--child", nargs=3, metavar=("APPROACH", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        approach, src, out = args.child
        fn = child_weightguard if approach == "weightguard" else child_naive
        print(json.dumps(fn(Path(src), Path(out))))
        return
    with tempfile.TemporaryDirectory(prefix="wg-convert-bench-", dir=os.environ.get("WG_BENCH_DIR")) as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        largest = build_checkpoint(src, args.shard_mb, args.shards)
        total = sum(p.stat().st_size for p in src.iterdir())
        print(f"checkpoint: {args.shards} shards, {total / MIB:.0f} MiB in all, largest shard {largest / MIB:.0f} MiB")
        results: dict[str, list[dict[str, float]]] = {"naive": [], "weightguard": []}
        for _ in range(args.repeat):
            for approach in results:
                results[approach].append(run_child(approach, src, root / f"out-{approach}"))
        print(
            f"{'approach':<12} {'wall s':>8} {'baseline MiB':>13} {'peak MiB':>9} {'peak-base MiB':>14} {'x shard':>8}"
        )
        for approach, runs in results.items():
            best = min(runs, key=lambda r: r["seconds"])
            peak = max(r["peak_kib"] for r in runs) / 1024
            base = min(r["baseline_kib"] for r in runs) / 1024
            ratio = (peak - base) * MIB / largest
            print(
                f"{approach:<12} {best['seconds']:>8.2f} {base:>13.0f} {peak:>9.0f} {peak - base:>14.0f} {ratio:>8.2f}"
            )
        wg = min(r["seconds"] for r in results["weightguard"])
        naive = min(r["seconds"] for r in results["naive"])
        print(
            f"weightguard / naive wall time: {wg / naive:.2f}x (the weightguard figure includes the scan and the proof)"
        )


if __name__ == "__main__":
    main()
