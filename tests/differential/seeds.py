"""Issue 15: the seed files the differential fuzzer mutates, one family per loader family.

Seeds are every file of the threat corpus (benign and malicious: a mutation of a blocked file
that weightguard then approves is exactly what the oracle looks for) plus checkpoints written by
the real libraries in every supported format: raw pickle protocols 0-5, torch zip and legacy,
joblib with each compressor, npy/npz, safetensors, GGUF, ONNX, Keras/HDF5 (from the corpus), and
tar/zip/gzip/xz/bz2 nestings. Everything is deterministic (fixed seeds, fixed timestamps).
Not handled here: mutating or scanning.
"""

from __future__ import annotations

import argparse
import bz2
import collections
import datetime as dt
import decimal
import fractions
import gzip
import io
import lzma
import pickle
import tarfile
import tempfile
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.corpus.build import MARKER_NAME, build_corpus
from tests.corpus.writers import zip_bytes

FAMILIES = ("pickle", "torch", "joblib", "numpy", "archive", "text", "other", "corpus-blocked")


@dataclass(frozen=True, slots=True)
class Seed:
    """One seed file: a display name (with the extension a user would see), its family and bytes."""

    name: str
    family: str
    data: bytes


def _metadata() -> dict[str, Any]:
    """Inert metadata of the kinds real checkpoints carry (every global here is allowlisted)."""
    return {
        "epoch": 3, "lr": 1e-3, "name": "tiny", "tags": ["a", "b"], "shape": (2, 3), "flags": {1, 2},
        "raw": b"\x00\x01", "buf": bytearray(b"xy"), "z": 1 + 2j, "when": dt.datetime(2024, 1, 1, 12, 0),
        "dur": dt.timedelta(seconds=5), "dec": decimal.Decimal("1.5"), "frac": fractions.Fraction(1, 3),
        "id": uuid.UUID(int=7), "args": argparse.Namespace(depth=2, act="relu"),
        "od": collections.OrderedDict(a=1), "counts": collections.Counter("aab"),
        "dd": collections.defaultdict(list, {"k": [1]}), "path": Path("weights/model.bin"),
    }  # fmt: skip


def _pickles() -> list[Seed]:
    import numpy as np

    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    objects = {"meta": _metadata(), "array": arr, "scalar": np.float64(2.5), "dtype": np.dtype("int16")}
    seeds = [Seed(f"raw/meta_p{p}.pkl", "pickle", pickle.dumps(objects, protocol=p)) for p in range(6)]
    seeds.append(Seed("raw/list_p0.pkl", "pickle", pickle.dumps([1, "two", 3.0, None, True], protocol=0)))
    # Protocol-0 pickles are printable text: the same bytes named as text files (issue 15 root cause 1).
    seeds.append(Seed("text/config.json", "text", pickle.dumps({"hidden_size": 64, "name": "x"}, protocol=0)))
    seeds.append(Seed("text/notes.txt", "text", pickle.dumps(["a", "b"], protocol=0)))
    return seeds


def _torch() -> list[Seed]:
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(3, 2, generator=gen), "b": torch.zeros(2, dtype=torch.float16), "step": 4}
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.ones(2, 2))
        model.bias.zero_()
    seeds: list[Seed] = []
    cases: list[tuple[str, object]] = [
        ("state", state),
        ("params", {"p": torch.nn.Parameter(torch.ones(2))}),
        ("linear_sd", model.state_dict()),
        ("numpy_in_torch", {"n": np.arange(3)}),
        ("mixed", {"t": torch.arange(4, dtype=torch.int64), "meta": {"e": 1}, "bf": torch.ones(2).bfloat16()}),
    ]
    for label, obj in cases:
        for legacy in (False, True):
            for protocol in (2, 4):
                out = io.BytesIO()
                torch.save(obj, out, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
                suffix = "legacy" if legacy else "zip"
                seeds.append(Seed(f"torch/{label}_{suffix}_p{protocol}.pt", "torch", out.getvalue()))
    return seeds


def _joblib() -> list[Seed]:
    import joblib
    import numpy as np

    obj = {"coef": np.arange(6, dtype=np.float64), "objs": np.array([{"a": 1}, "s"], dtype=object), "n": 3}
    seeds: list[Seed] = []
    for compress in (0, 3, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        out = io.BytesIO()
        joblib.dump(obj, out, compress=compress)
        label = compress if isinstance(compress, int) else compress[0]
        seeds.append(Seed(f"joblib/model_{label}.joblib", "joblib", out.getvalue()))
    return seeds


def _numpy() -> list[Seed]:
    import numpy as np

    seeds: list[Seed] = []
    for label, value in (
        ("f32", np.arange(6, dtype=np.float32)),
        ("obj", np.array([{"k": 1}, [1, 2]], dtype=object)),
        ("struct", np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])),
    ):
        out = io.BytesIO()
        np.save(out, value, allow_pickle=True)
        seeds.append(Seed(f"numpy/{label}.npy", "numpy", out.getvalue()))
    for label, saver in (("plain", np.savez), ("compressed", np.savez_compressed)):
        out = io.BytesIO()
        saver(out, a=np.ones(3), o=np.array([None, "x"], dtype=object))
        seeds.append(Seed(f"numpy/{label}.npz", "numpy", out.getvalue()))
    return seeds


def _tar(members: list[tuple[str, bytes]], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


WRAPPERS: dict[str, Callable[[str, bytes], tuple[str, bytes]]] = {
    "zip": lambda n, d: (n + ".zip", zip_bytes([(Path(n).name, d)])),
    "tar": lambda n, d: (n + ".tar", _tar([(Path(n).name, d)])),
    "tar.gz": lambda n, d: (n + ".tar.gz", _tar([(Path(n).name, d)], "w:gz")),
    "gz": lambda n, d: (n + ".gz", gzip.compress(d, mtime=0)),
    "xz": lambda n, d: (n + ".xz", lzma.compress(d)),
    "bz2": lambda n, d: (n + ".bz2", bz2.compress(d)),
}


def _archives(inner: list[Seed]) -> list[Seed]:
    picks = [s for s in inner if s.name in ("raw/meta_p2.pkl", "torch/state_zip_p2.pt", "torch/state_legacy_p2.pt")]
    seeds = []
    for seed in picks:
        for wrapper in WRAPPERS.values():
            name, data = wrapper(seed.name, seed.data)
            seeds.append(Seed(f"archive/{name}", "archive", data))
    # Two levels: a zip holding a tar.gz of a pickle.
    name, data = WRAPPERS["tar.gz"]("meta.pkl", picks[0].data)
    seeds.append(Seed("archive/nested.zip", "archive", zip_bytes([(name, data)])))
    return seeds


def _family_of_corpus(relpath: str, expected: str) -> str:
    if expected == "blocked":
        return "corpus-blocked"
    suffixes = "".join(Path(relpath).suffixes)
    for family, ends in (
        ("torch", (".pt", ".bin", ".pth")),
        ("joblib", (".joblib",)),
        ("numpy", (".npy", ".npz")),
        ("archive", (".zip", ".tar", ".gz", ".xz", ".bz2", ".7z")),
        ("text", (".json", ".txt", ".md")),
        ("pickle", (".pkl", ".pickle")),
    ):
        if suffixes.endswith(ends):
            return family
    return "other"


@cache
def all_seeds(marker_dir: str | None = None) -> tuple[Seed, ...]:
    """Every seed, deterministic; corpus payloads target ``<marker_dir>/PWNED_MARKER``.

    The default marker directory is a fixed path under the system temp dir (the oracle checks it).
    """
    directory = Path(marker_dir) if marker_dir else default_marker_dir()
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        built = Path(tmp)
        generated = [*_pickles(), *_torch(), *_joblib(), *_numpy()]
        corpus = _corpus(built, directory / MARKER_NAME)
    return tuple([*generated, *_archives(generated), *corpus])


def _corpus(tmp: Path, marker: Path) -> list[Seed]:
    seeds = []
    for case in build_corpus(tmp / "corpus", marker):
        group = "benign" if case.expected == "approved" else "malicious"
        family = _family_of_corpus(case.name, case.expected)
        seeds.append(Seed(f"corpus/{group}/{case.name}", family, case.path.read_bytes()))
    return seeds


def default_marker_dir() -> Path:
    """Where corpus payloads would create their marker (created on demand)."""
    path = Path(tempfile.gettempdir()) / "wg-differential-marker"
    path.mkdir(exist_ok=True)
    return path


def marker_path(marker_dir: str | None = None) -> Path:
    """The marker file corpus seeds name."""
    return (Path(marker_dir) if marker_dir else default_marker_dir()) / MARKER_NAME


def by_family(family: str) -> tuple[Seed, ...]:
    """The seeds of one family."""
    return tuple(s for s in all_seeds() if s.family == family)
