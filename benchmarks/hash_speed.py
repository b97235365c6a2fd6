"""Hash speed: weightguard's manifest hashing against model-signing and against the machine's own limit.

Builds a ~2 GB model of several shards (random bytes, fixed seed) in a temp
dir, then measures in one run, over the same files:

* weightguard ``hash_files`` (sha256, default workers = one per CPU);
* model-signing's Python API (``model_signing.hashing.Config().use_file_serialization``),
  only if ``model_signing`` is importable (it is not a weightguard dependency);
* the machine's limit: one hashlib sha256 stream per core in parallel threads,
  over the same bytes cut into equal contiguous ranges (ideal load balance).

Every method runs on a warm page cache (the model was just written and is read
once before timing), so the figures are CPU-bound hashing rates, not disk rates.
Each method runs ``--repeat`` times, interleaved; the best run is reported, in
wall time and in process CPU seconds (the figure to compare on a shared machine).

    .venv/bin/python benchmarks/hash_speed.py [--size-mb 2048] [--shards 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.integrity.manifest import Manifest
from weightguard.sources.local import LocalSource

BLOCK = 16 * 2**20
READ = 8 * 2**20


def build_model(root: Path, size_mb: int, shards: int) -> int:
    """Write ``shards`` weight files totalling ``size_mb`` MiB plus a config; return the byte count."""
    rng = np.random.default_rng(20240611)
    block = bytearray(rng.bytes(BLOCK))
    per_shard = size_mb * 2**20 // shards
    total = 0
    for s in range(shards):
        with (root / f"model-{s + 1:05d}-of-{shards:05d}.safetensors").open("wb") as fh:
            written = 0
            while written < per_shard:
                # A counter in each block keeps every block distinct at no cost.
                block[:8] = (s * 2**32 + written).to_bytes(8, "little")
                n = min(BLOCK, per_shard - written)
                fh.write(memoryview(block)[:n])
                written += n
        total += per_shard
    config = b'{"model_type": "bench", "hidden_size": 4096}\n'
    (root / "config.json").write_bytes(config)
    return total + len(config)


def run_weightguard(root: Path) -> str:
    files = LocalSource(root).collect().files
    return Manifest.of(hash_files(files, HashRequest())).root_digest()


def run_model_signing(root: Path) -> str:
    from model_signing import hashing

    manifest = hashing.Config().use_file_serialization(hashing_algorithm="sha256").hash(root)
    digests = b"".join(rd.digest.digest_value for rd in manifest.resource_descriptors())
    return hashlib.sha256(digests).hexdigest()


def run_limit(root: Path, streams: int) -> str:
    """One sha256 stream per core over equal contiguous ranges of the concatenated files."""
    paths = sorted(p for p in root.iterdir() if p.is_file())
    maps = []
    for p in paths:
        with p.open("rb") as fh:
            maps.append(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    sizes = [len(m) for m in maps]
    total = sum(sizes)
    cuts = [total * i // streams for i in range(streams + 1)]

    def stream(lo: int, hi: int) -> str:
        h = hashlib.sha256()
        offset = 0
        for m, size in zip(maps, sizes, strict=True):
            start, end = max(lo, offset), min(hi, offset + size)
            view = memoryview(m)
            for pos in range(start - offset, end - offset, READ):
                h.update(view[pos : min(pos + READ, end - offset)])
            view.release()
            offset += size
        return h.hexdigest()

    with ThreadPoolExecutor(max_workers=streams) as pool:
        parts = list(pool.map(stream, cuts[:-1], cuts[1:]))
    for m in maps:
        m.close()
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def timed(fn: Callable[[], str]) -> tuple[float, float, str]:
    """Wall seconds, process CPU seconds (all threads), and the result."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    try:
        import model_signing  # noqa: F401

        have_ms = True
    except ImportError as exc:
        print(f"model-signing not importable ({exc}); measuring weightguard and the limit only")
        have_ms = False

    root = Path(tempfile.mkdtemp(prefix="wg-hash-bench-"))
    try:
        t0 = time.perf_counter()
        total = build_model(root, args.size_mb, args.shards)
        print(f"built {total / 1e9:.2f} GB: {args.shards} shards + config, {time.perf_counter() - t0:.1f}s ({root})")
        print(f"cores: {cores}; load average before: {os.getloadavg()}")
        run_limit(root, cores)  # warm the page cache once, untimed

        methods: dict[str, Callable[[], str]] = {
            "limit (sha256 x cores)": lambda: run_limit(root, cores),
            "limit (1 stream)": lambda: run_limit(root, 1),
            "weightguard hash_files": lambda: run_weightguard(root),
        }
        if have_ms:
            methods["model-signing 1.x API"] = lambda: run_model_signing(root)
        times: dict[str, list[float]] = {name: [] for name in methods}
        cpu: dict[str, list[float]] = {name: [] for name in methods}
        roots: dict[str, str] = {}
        for _ in range(args.repeat):
            for name, fn in methods.items():
                seconds, cpu_seconds, digest = timed(fn)
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
                roots[name] = digest
        if have_ms and roots["weightguard hash_files"] != roots["model-signing 1.x API"]:
            print("ERROR: weightguard and model-signing disagree on the root digest")
            return 1

        rate = {name: total / min(ts) / 1e9 for name, ts in times.items()}
        print(f"\n{'method':28} {'best GB/s':>10} {'median GB/s':>12} {'best CPU s':>11}")
        for name, ts in times.items():
            print(f"{name:28} {rate[name]:10.2f} {total / statistics.median(ts) / 1e9:12.2f} {min(cpu[name]):11.3f}")
        # On a shared machine wall times swing with the neighbours; CPU seconds per byte do not.
        print(f"CPU cost, limit / weightguard: {min(cpu['limit (1 stream)']) / min(cpu['weightguard hash_files']):.3f}")
        wg = rate["weightguard hash_files"]
        print(f"\nweightguard / limit (sha256 x {cores} cores): {wg / rate['limit (sha256 x cores)']:.3f}")
        print(f"weightguard / single stream:               {wg / rate['limit (1 stream)']:.3f}")
        if have_ms:
            print(f"weightguard / model-signing:               {wg / rate['model-signing 1.x API']:.3f}")
            print(f"root digests agree: {roots['weightguard hash_files']}")
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
