"""verify-many against the naive loop: a catalogue of small models, half of whose files are shared.

Builds (fixed seed) ``--models`` models (default 200) of four files each: two
shared by every model (``config.json`` and a ~78 KB ``tokenizer.json``; with
``--distinct`` each model's tokenizer has one token of its own) and
two of its own (``model.safetensors`` and ``training_args.bin``, a PyTorch-zip
checkpoint holding a small benign pickle, so that every model exercises the
pickle analyzer). Then, in one run and one process (imports excluded, so the
three figures compare the work only):

* **cold**: ``verify-many``'s runner with an empty results cache and the local
  engine (its worker processes start inside the timed region), run with
  ``--trust-file-metadata`` so that it also records every file's stamp;
* **warm**: the same again, policy unchanged, default settings: every file is
  read and hashed again, every verdict comes from the cache;
* **warm-trusted**: again with ``--trust-file-metadata``: unchanged files are
  not read at all (their digests are reused by device, inode, size, mtime, ctime);
* **naive**: ``pipeline.verify`` called on each model in turn.

Each ``verify-many`` figure also includes building the catalogue report from the run
(:func:`~weightguard.catalogue.report.catalogue_report`: counts, every finding, the
slowest models; what every output format starts from), since a cached model's full
report is only decoded when a rendering asks for it. The naive figure is the
``verify`` calls alone.

Files are only remembered once they have been still for ``SETTLED_NS``, so the
benchmark waits that long after building the catalogue.

It also checks that the three give the same verdict for every model.
Goal: warm >= 20x faster than naive, cold no slower than naive.

    .venv/bin/python benchmarks/catalogue.py [--models 200] [--workers N] [--repeat 3] [--distinct]
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import shutil
import tempfile
import time
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from weightguard import __version__
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.memo import SETTLED_NS
from weightguard.catalogue.report import catalogue_report
from weightguard.catalogue.runner import run_catalogue
from weightguard.pipeline import verify
from weightguard.policy.load import load_builtin


def _torch_zip(payload: object) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        # pickle.dumps only writes a benign fixture here; nothing is ever unpickled.
        zf.writestr(zipfile.ZipInfo("archive/data.pkl", (2026, 1, 1, 0, 0, 0)), pickle.dumps(payload, protocol=2))
        zf.writestr(zipfile.ZipInfo("archive/version", (2026, 1, 1, 0, 0, 0)), b"3\n")
    return buffer.getvalue()


def build(root: Path, models: int, *, distinct: bool = False) -> None:
    rng = np.random.default_rng(2026)
    vocab = {f"token{i}": i for i in range(4000)}
    tokenizer = json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": vocab}})
    config = json.dumps({"architectures": ["Tiny"], "hidden_size": 16}) + "\n"
    for i in range(models):
        out = root / f"model-{i:04d}"
        out.mkdir(parents=True)
        (out / "config.json").write_text(config)
        if distinct:  # one more token of its own
            tokenizer = json.dumps(
                {"version": "1.0", "model": {"type": "WordLevel", "vocab": {**vocab, f"m{i}": 4000}}}
            )
        (out / "tokenizer.json").write_text(tokenizer)
        (out / "model.safetensors").write_bytes(save({"w": rng.standard_normal((64, 16), dtype=np.float32)}))
        args = {"learning_rate": float(rng.random()), "epochs": i, "names": [f"run{i}", "base"]}
        (out / "training_args.bin").write_bytes(_torch_zip(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--distinct", action="store_true", help="give every model a tokenizer of its own")
    args = parser.parse_args()
    loaded = load_builtin("default")
    work = Path(tempfile.mkdtemp(prefix="wg-catalogue-bench-"))
    try:
        build(work / "models", args.models, distinct=args.distinct)
        entries = read_catalogue(work / "models")
        files = list((work / "models").rglob("*"))
        for path in files:  # warm the page cache, as a re-verification of a local catalogue would find it
            if path.is_file():
                path.read_bytes()

        time.sleep(SETTLED_NS / 1e9 + 0.2)
        # Each figure is the best of --repeat rounds (the machine is shared; the minimum is the
        # least disturbed); every round starts from an empty results cache.
        timings: dict[str, float] = {}
        verdicts: dict[str, list[str]] = {}
        for round_ in range(args.repeat):
            cache = ResultsCache(
                f"sqlite:///{work}/results-{round_}.db", policy_sha256=loaded.sha256, version=__version__
            )
            for name, trusted in (("cold", True), ("warm", False), ("warm-trusted", True)):
                engine = LocalEngine(args.workers)
                gc.collect()  # the previous figure's garbage is not this one's work
                started = time.perf_counter()
                summary = run_catalogue(entries, loaded, engine, cache, trust_file_metadata=trusted)
                catalogue_report(summary, loaded, __version__)
                engine.close()
                timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - started)
                verdicts[name] = [m.verdict for m in summary.models]
                if round_ == 0:
                    print(
                        f"{name:>12}: {summary.executed} units run, {summary.reused} reused, {summary.files} files, "
                        f"{summary.unique_files} distinct, {summary.read_files} read"
                    )
            cache.close()
            gc.collect()
            started = time.perf_counter()
            verdicts["naive"] = [verify(e.target, loaded).verdict for e in entries]
            timings["naive"] = min(timings.get("naive", float("inf")), time.perf_counter() - started)
        for name in ("cold", "warm", "warm-trusted", "naive"):
            print(f"{name:>12}: {timings[name]:7.3f} s (best of {args.repeat})")
        same = verdicts["cold"] == verdicts["warm"] == verdicts["warm-trusted"] == verdicts["naive"]
        print(f"verdicts identical: {same} ({verdicts['naive'].count('approved')} approved of {args.models})")
        print(f"warm speed-up over naive: {timings['naive'] / timings['warm']:.1f}x (goal >= 20x)")
        print(f"warm-trusted speed-up over naive: {timings['naive'] / timings['warm-trusted']:.1f}x (goal >= 20x)")
        print(f"cold / naive: {timings['cold'] / timings['naive']:.2f} (goal <= 1.0)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
