"""The oracle's sandboxed worker process: runs the real loaders on files and records what they reach.

Started by :class:`tests.differential.oracle.Oracle` as ``python _worker.py CONFIG_JSON`` in a
scratch directory; reads one JSON request per line on stdin (``{"id", "path", "skip"}``) and
writes JSON lines on the duplicated stdout: one per loader run (``{"id", "loader", "outcome",
"globals", "events", "seconds"}``) and a final ``{"id", "done", "marker", "maxrss_kb"}``, so the
parent knows which loader was running when the process died or hung.

Recording mode: every global a loader asks for is recorded (after the ``_compat_pickle`` remapping
the real unpickler applies); the real object is returned only when it is on weightguard's allowlist
(:mod:`weightguard.analysis.allowlist`), any other global raises :class:`Refused`. So nothing a
hostile stream names ever runs, yet what the loader *reaches* is known. The loaders are the real
ones: ``_pickle`` (C) for ``pickle.load`` and torch, ``pickle._Unpickler`` (Python) for joblib,
``pickle.load`` as numpy calls it. An audit hook records process, network, ctypes, code-execution,
import and write events once the worker is warmed up (lazy imports of a benign load are not events).

Not handled here: Keras (not installed) and Jinja chat templates (no GGUF reader installed).
"""

from __future__ import annotations

import _compat_pickle
import _pickle
import bz2
import contextlib
import gzip
import io
import json
import lzma
import os
import pickle
import resource
import sys
import tarfile
import time
import types
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from weightguard.analysis.allowlist import ALLOWLIST

_STATE: dict[str, Any] = {"armed": False, "in_hook": False, "scratch": str(Path.cwd())}
_GLOBALS: list[tuple[str, str]] = []
_EVENTS: list[str] = []
_MAX_MEMBERS = 64
_MAX_DEPTH = 3
_MAX_INFLATE = 256 << 20


class Refused(pickle.UnpicklingError):
    """A global that is not on weightguard's allowlist: recorded, never resolved."""


def _mapped(module: str, name: str, proto: int) -> tuple[str, str]:
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def _gate(module: object, name: object, proto: int) -> None:
    if not isinstance(module, str) or not isinstance(name, str):
        _GLOBALS.append((repr(module), repr(name)))
        raise Refused("non-string global name")
    resolved = _mapped(module, name, proto)
    if not resolved[0]:
        # ``pickle._Unpickler`` at end of file reads an empty module line: ``__import__("")`` fails.
        _GLOBALS.append(("<missing>", resolved[1]))
        raise ModuleNotFoundError("empty module name")
    if resolved not in ALLOWLIST and _python2_only(resolved[0]):
        # A Python 2 module name the real unpickler does not remap here (protocol >= 3): the loader
        # fails with ModuleNotFoundError, nothing is reached. Recorded apart, not a contradiction.
        _GLOBALS.append(("<missing>" + resolved[0], resolved[1]))
        raise ModuleNotFoundError(resolved[0])
    _GLOBALS.append(resolved)
    if resolved not in ALLOWLIST:
        raise Refused(f"{resolved[0]}.{resolved[1]}")


def _python2_only(module: str) -> bool:
    """A ``_compat_pickle`` Python 2 name that does not exist as a module in this interpreter."""
    py2 = module in _compat_pickle.IMPORT_MAPPING or any(m == module for m, _ in _compat_pickle.NAME_MAPPING)
    if not py2 or module in sys.modules:
        return False
    import importlib.util

    try:
        return importlib.util.find_spec(module.split(".")[0]) is None
    except (ImportError, ValueError):
        return True


def _peek_proto(file: Any) -> int:
    try:
        pos = file.tell()
        head = file.read(2)
        file.seek(pos)
    except (AttributeError, OSError, ValueError):
        return 0
    return head[1] if len(head) == 2 and head[0] == 0x80 else 0


class RecordingUnpickler(_pickle.Unpickler):
    """CPython's C unpickler with a recording, allowlist-gated ``find_class``."""

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._wg_proto = _peek_proto(file)

    def find_class(self, module: str, name: str) -> Any:
        _gate(module, name, self._wg_proto)
        return super().find_class(module, name)


def _load(file: IO[bytes], **kwargs: Any) -> Any:
    return RecordingUnpickler(file, **kwargs).load()


def _loads(data: bytes, /, **kwargs: Any) -> Any:
    """The real ``_pickle.loads`` (its own in-memory reader), gated through its ``pickle.find_class`` audit event."""
    head = bytes(data[:2])
    previous = _STATE.get("loads_proto")
    _STATE["loads_proto"] = head[1] if len(head) == 2 and head[0] == 0x80 else 0
    try:
        return _pickle.loads(data, **kwargs)
    finally:
        _STATE["loads_proto"] = previous


_PY_FIND_CLASS = pickle._Unpickler.find_class


def _py_find_class(self: Any, module: str, name: str) -> Any:
    _gate(module, name, getattr(self, "proto", 0))
    return _PY_FIND_CLASS(self, module, name)


RECORDING_PICKLE = types.ModuleType("recording_pickle")
RECORDING_PICKLE.__dict__.update(
    Unpickler=RecordingUnpickler, load=_load, loads=_loads, UnpicklingError=pickle.UnpicklingError,
    Pickler=pickle.Pickler, dump=pickle.dump, dumps=pickle.dumps, HIGHEST_PROTOCOL=pickle.HIGHEST_PROTOCOL,
)  # fmt: skip


def _install() -> None:
    """Route every pickle entry point the loaders use through the recording gate."""
    pickle.Unpickler = RecordingUnpickler  # type: ignore[misc, assignment]
    pickle.load = _load  # type: ignore[assignment]
    pickle.loads = _loads  # type: ignore[assignment]
    pickle._Unpickler.find_class = _py_find_class  # type: ignore[method-assign]


# -- audit hook ------------------------------------------------------------------------------
_FLAGGED_PREFIXES = (
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "os.startfile", "os.putenv", "os.unsetenv", "os.chdir", "subprocess.", "socket.", "ctypes.", "http.", "urllib.", "ftplib.", "smtplib.", "telnetlib.", "imaplib.", "poplib.", "sqlite3.",
    "webbrowser.", "pty.", "cpython.run_", "sys.addaudithook", "sys.settrace", "sys.setprofile",
    "builtins.input", "code.__new__", "function.__new__", "setopencodehook",
)  # fmt: skip
# Events that name a path: flagged when the path is outside the scratch directory (the worker's TMPDIR
# lives inside it, so torch's legacy tar loader unpacking into a temporary directory is not an event).
_PATH_EVENTS = frozenset({
    "os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link",
    "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree",
    "shutil.make_archive", "shutil.unpack_archive", "shutil.chown",
})  # fmt: skip
_CODE_EVENTS = frozenset({"exec", "compile", "code.__new__"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _benign_code_event() -> bool:
    """True inside an import (module code runs) or ``ast.literal_eval`` (numpy's header parser compiles)."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib"):
            return True
        if code.co_name == "literal_eval" and code.co_filename.endswith("ast.py"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False  # type: ignore[unreachable]


def _outside_scratch(path: object) -> bool:
    if isinstance(path, int):
        return False
    text = os.fsdecode(path) if isinstance(path, str | bytes) else str(path)
    full = str(Path(text).absolute())
    return not full.startswith(_STATE["scratch"] + os.sep)


def _judge(event: str, args: tuple[Any, ...]) -> str | None:
    if event == "open":
        mode, flags = (args[1], args[2]) if len(args) >= 3 else (None, 0)
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        return f"open-write {args[0]!r}" if writes and _outside_scratch(args[0]) else None
    if event == "import":
        top = str(args[0]).split(".")[0]
        return None if top in _STATE["imports_ok"] else f"import {args[0]}"
    if event in _CODE_EVENTS:
        return None if _benign_code_event() else f"{event} {str(args[:2])[:120]}"
    if event in _PATH_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, str | bytes | os.PathLike)]
        return f"{event} {str(args)[:160]}" if any(_outside_scratch(p) for p in paths) else None
    if event.startswith(_FLAGGED_PREFIXES):
        return f"{event} {str(args)[:160]}"
    return None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class" and _STATE.get("loads_proto") is not None and not _STATE["in_hook"]:
        proto, _STATE["loads_proto"] = _STATE["loads_proto"], None  # allowlisted ones resolve normally
        try:
            _gate(args[0], args[1], proto)
        finally:
            _STATE["loads_proto"] = proto
        return
    if not _STATE["armed"] or _STATE["in_hook"]:
        return
    _STATE["in_hook"] = True
    try:
        found = _judge(event, args)
        if found is not None:
            _EVENTS.append(found)
    finally:
        _STATE["in_hook"] = False


# -- loaders ---------------------------------------------------------------------------------
def _source(target: str | bytes) -> Any:
    return io.BytesIO(target) if isinstance(target, bytes) else target


def _stacked(stream: IO[bytes], size: int) -> int:
    count = 0
    while stream.tell() < size and count < 16:
        start = stream.tell()
        RecordingUnpickler(stream).load()
        count += 1
        if stream.tell() == start:
            break
    return count


def load_pickle(target: str | bytes) -> str:
    """``pickle.load`` (C unpickler) on a real file and on ``BytesIO``, then ``pickle.loads``.

    The three differ: ``_pickle`` reads opcode arguments that cross a FRAME end differently from a
    ``BytesIO`` (what torch's zip loader hands it) than from a buffered file or a bytes object.
    Stacked pickles are read in turn, as torch's legacy loader does.
    """
    data = target if isinstance(target, bytes) else Path(target).read_bytes()
    outcomes = []
    for how in ("file", "bytesio", "loads"):
        try:
            if how == "file" and isinstance(target, str):
                with Path(target).open("rb", buffering=8192) as handle:
                    outcomes.append(f"{how}: loaded {_stacked(handle, len(data))}")
            elif how == "bytesio":
                outcomes.append(f"{how}: loaded {_stacked(io.BytesIO(data), len(data))}")
            elif how == "loads":
                _loads(data)
                outcomes.append(f"{how}: loaded")
        except Exception as error:  # noqa: BLE001 - each reading is an outcome
            outcomes.append(f"{how}: raised {type(error).__name__}: {str(error)[:80]}")
    return "; ".join(outcomes)


def load_torch(target: str | bytes) -> str:
    """``torch.load(weights_only=False)`` with the recording pickle module (zip, legacy and tar formats)."""
    import torch

    torch.load(_source(target), weights_only=False, pickle_module=RECORDING_PICKLE, map_location="cpu")
    return "loaded"


def load_joblib(target: str | bytes) -> str:
    """``joblib.load`` (pure-Python unpickler, every compression joblib reads)."""
    import joblib

    joblib.load(_source(target))
    return "loaded"


def load_numpy(target: str | bytes) -> str:
    """``np.load(allow_pickle=True)``, every member of an npz read."""
    import numpy as np

    loaded = np.load(_source(target), allow_pickle=True)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            for key in loaded.files:
                loaded[key]
    return "loaded"


_MEMBER_LOADERS: dict[str, Callable[[str | bytes], str]] = {
    "pickle": load_pickle, "torch": load_torch, "joblib": load_joblib, "numpy": load_numpy,
}  # fmt: skip


def _members(data: bytes) -> list[tuple[str, bytes]]:
    """The members a user extracting the file with the standard library would get (all duplicates too)."""
    found: list[tuple[str, bytes]] = []
    if data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        opener = gzip.open if data[:2] == b"\x1f\x8b" else bz2.open if data[:3] == b"BZh" else lzma.open
        with opener(io.BytesIO(data)) as handle:
            found.append(("<decompressed>", handle.read(_MAX_INFLATE)))
    buffer = io.BytesIO(data)
    if zipfile.is_zipfile(buffer):
        with zipfile.ZipFile(buffer) as archive:
            for info in archive.infolist()[:_MAX_MEMBERS]:
                try:
                    found.append((info.filename, archive.open(info).read(_MAX_INFLATE)))
                except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError, EOFError):
                    continue
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar.getmembers()[:_MAX_MEMBERS]:
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    found.append((member.name, extracted.read(_MAX_INFLATE)))
    except (tarfile.TarError, OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
        pass
    return found


def load_archive(target: str | bytes, depth: int = 0) -> str:
    """Extract zip/tar/gzip/bz2/xz members as the standard library reads them and load each one."""
    data = target if isinstance(target, bytes) else Path(target).read_bytes()
    members = _members(data)
    for _, member in members:
        for loader in _MEMBER_LOADERS.values():
            with contextlib.suppress(Exception):  # a member a loader rejects is an outcome, not a failure
                loader(member)
        if depth < _MAX_DEPTH:
            load_archive(member, depth + 1)
    return f"members {len(members)}"


LOADERS: dict[str, Callable[[str | bytes], str]] = {**_MEMBER_LOADERS, "archive": load_archive}


# -- main loop -------------------------------------------------------------------------------
def _warm_up() -> None:
    """Run every loader once on benign data so their lazy imports are not counted as events."""
    import joblib
    import numpy as np
    import torch

    arrays = {"w": np.arange(6, dtype=np.float32), "o": np.array([{"a": 1}], dtype=object)}
    samples: list[bytes] = []
    for legacy in (False, True):
        out = io.BytesIO()
        torch.save({"t": torch.zeros(2), "n": arrays["w"]}, out, _use_new_zipfile_serialization=not legacy)
        samples.append(out.getvalue())
    for compress in (0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        out = io.BytesIO()
        joblib.dump(arrays, out, compress=compress)
        samples.append(out.getvalue())
    for obj in (arrays["w"], arrays["o"]):
        out = io.BytesIO()
        np.save(out, obj, allow_pickle=True)
        samples.append(out.getvalue())
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    samples.append(out.getvalue())
    samples.append(pickle.dumps([b"x", {1, 2}, 1j, bytearray(b"y")], protocol=2))
    from safetensors.numpy import save as save_safetensors

    samples.append(save_safetensors({"w": arrays["w"]}))
    for sample in samples:
        for loader in LOADERS.values():
            with contextlib.suppress(Exception):  # warm-up only
                loader(sample)


def _limit_memory(extra_mb: int) -> None:
    with Path("/proc/self/status").open() as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = (vm_kb << 10) + (extra_mb << 20)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))


def _marker_hit(markers: list[str]) -> bool:
    return any(os.path.lexists(m) for m in markers)


def _clear(markers: list[str]) -> None:
    for marker in markers:
        if os.path.lexists(marker):
            Path(marker).unlink()


def main() -> None:
    config = json.loads(sys.argv[1])
    out = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    sys.stdout = sys.stderr = Path(os.devnull).open("w")  # noqa: SIM115
    warnings.simplefilter("ignore")
    _STATE["scratch"] = str(Path.cwd().absolute())
    markers = [*config["markers"], str(Path(_STATE["scratch"]) / "PWNED_MARKER")]
    _install()
    sys.addaudithook(_hook)
    _warm_up()
    tops = {module.split(".")[0] for module, _ in ALLOWLIST}
    _STATE["imports_ok"] = frozenset({*tops, "encodings", *(m.split(".")[0] for m in sys.modules)})
    _limit_memory(config["memory_mb"])
    before = {p.name for p in Path.cwd().iterdir()}
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        _clear(markers)
        for name, loader in LOADERS.items():
            if name in request["skip"]:
                continue
            _GLOBALS.clear()
            _EVENTS.clear()
            started = time.monotonic()
            _STATE["armed"] = True
            try:
                outcome = loader(request["path"])
            except BaseException as error:  # noqa: BLE001 - every loader failure is an outcome
                outcome = f"raised {type(error).__name__}: {str(error)[:120]}"
            finally:
                _STATE["armed"] = False
            reply = {"id": request["id"], "loader": name, "outcome": outcome, "globals": _GLOBALS,
                     "events": _EVENTS, "seconds": round(time.monotonic() - started, 4)}  # fmt: skip
            out.write(json.dumps(reply) + "\n")
        created = sorted({p.name for p in Path.cwd().iterdir()} - before)
        done = {"id": request["id"], "done": True, "marker": _marker_hit(markers), "created": created,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}  # fmt: skip
        out.write(json.dumps(done) + "\n")
        for name in created:
            _remove(name)


def _remove(name: str) -> None:
    try:
        Path(name).unlink()
    except IsADirectoryError:
        import shutil

        shutil.rmtree(name, ignore_errors=True)
    except OSError:
        pass


if __name__ == "__main__":
    main()
