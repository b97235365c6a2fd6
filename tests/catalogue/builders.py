"""Catalogues of small models built in code (fixed seeds), and unit wrappers for engine tests.

The wrappers are module-level classes so that spawned processes and Ray
workers can unpickle them; each delegates to the real ``execute_unit``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from weightguard.catalogue.interface import FileUnit, UnitResult, WorkUnit
from weightguard.catalogue.units import execute_unit
from weightguard.policy.load import LoadedPolicy

FIXED_TIME = (2026, 1, 1, 0, 0, 0)
SHARED_TOKENIZER = json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1}}})


def evil_pickle() -> bytes:
    # builtins.exec("print(1)") as a protocol 2 pickle: never executed, only analysed.
    code = b"print(1)"
    return b"\x80\x02cbuiltins\nexec\nX" + len(code).to_bytes(4, "little") + code + b"\x85R."


def safetensors_model(out: Path, seed: int, *, tokenizer: str = SHARED_TOKENIZER) -> Path:
    """A clean model: its own weights, a shared config and tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (out / "model.safetensors").write_bytes(save({"w": rng.standard_normal((8, 4), dtype=np.float32)}))
    (out / "config.json").write_text(json.dumps({"hidden_size": 4}) + "\n")
    (out / "tokenizer.json").write_text(tokenizer)
    return out


def malicious_model(out: Path) -> Path:
    """A PyTorch-zip checkpoint whose data.pkl calls builtins.exec."""
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out / "pytorch_model.bin", "w") as zf:
        for name, data in (("archive/data.pkl", evil_pickle()), ("archive/version", b"3\n")):
            zf.writestr(zipfile.ZipInfo(name, date_time=FIXED_TIME), data)
    (out / "config.json").write_text(json.dumps({"hidden_size": 4}) + "\n")
    return out


def unanalysable_model(out: Path) -> Path:
    """A model with a file of unknown format (skipped: the verdict is incomplete)."""
    safetensors_model(out, 99)
    (out / "blob.dat").write_bytes(bytes(range(256)) * 4)
    return out


def catalogue_dir(root: Path, clean: int = 3) -> Path:
    """A directory catalogue: ``clean`` approved models, one rejected, one incomplete."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(clean):
        safetensors_model(root / f"clean-{i}", i)
    malicious_model(root / "evil")
    unanalysable_model(root / "odd")
    return root


@dataclass(frozen=True)
class CountingExecute:
    """Runs units for real and leaves one marker file per execution in ``log_dir``."""

    log_dir: str

    def __call__(self, unit: WorkUnit, loaded: LoadedPolicy) -> UnitResult:
        name = f"{unit.kind.value}-{unit.key[:16]}-{os.getpid()}-{os.urandom(4).hex()}"
        Path(self.log_dir, name).touch()
        return execute_unit(unit, loaded)


def executions(log_dir: Path, kind: str | None = None) -> list[str]:
    """The markers :class:`CountingExecute` left, optionally of one unit kind."""
    return sorted(p.name for p in log_dir.iterdir() if kind is None or p.name.startswith(kind + "-"))


@dataclass(frozen=True)
class CrashOnceExecute:
    """Kills its worker process the first time it runs the file unit of ``victim`` (sha256).

    A marker file records the first attempt, so the retry (in a new worker) goes through.
    """

    victim: str
    marker: str

    def __call__(self, unit: WorkUnit, loaded: LoadedPolicy) -> UnitResult:
        if isinstance(unit, FileUnit) and unit.sha256 == self.victim:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(17)  # a hard crash: no exception, no cleanup, as a segfault or the OOM killer
        return execute_unit(unit, loaded)


@dataclass(frozen=True)
class AlwaysCrashExecute:
    """Kills its worker every time it runs the file unit of ``victim``."""

    victim: str

    def __call__(self, unit: WorkUnit, loaded: LoadedPolicy) -> UnitResult:
        if isinstance(unit, FileUnit) and unit.sha256 == self.victim:
            os._exit(17)
        return execute_unit(unit, loaded)
