"""Ask CPython's own ``_pickle`` whether loading bytes reaches ``find_class`` (in a subprocess).

Each input is loaded four ways, as loaders do: by the C unpickler from an ``io.BytesIO``
(no ``peek``, as torch), from a buffered reader (as ``open()``) and from bytes
(``pickle.loads``, whose ``find_class`` is stopped at its import) -- they read FRAMEs
differently -- and by the pure-Python ``pickle._Unpickler`` (joblib, dill), whose
argument parsers differ. The file readers subclass the unpicklers: ``find_class``
only records that it was reached and raises, so nothing is ever imported or called;
``persistent_load`` returns a harmless stand-in type (as permissive as torch's loaders).
:class:`Oracle` is one persistent worker process with an address-space limit (a hostile
memo index makes CPython allocate gigabytes) and a 2 s alarm per load; it takes batches
of inputs (a process per input would cost ~30 ms each). Copyreg extension codes 1-3 are
registered in the worker so that EXT opcodes reach ``find_class`` too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

_WORKER = r"""
import builtins, copyreg, io, json, pickle, resource, signal, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
for code in (1, 2, 3):
    copyreg.add_extension("weightguard_oracle_ext", f"name{code}", code)

class Reached(Exception):
    pass

class Anything:
    # What a permissive persistent_load may return: a type that accepts every use.
    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)
    def __init__(self, *args, **kwargs):
        pass
    def __call__(self, *args, **kwargs):
        return Anything()
    def __setstate__(self, state):
        pass
    def extend(self, items):
        pass
    def append(self, item):
        pass
    def add(self, item):
        pass
    def __setitem__(self, key, value):
        pass

class Recorder(pickle.Unpickler):
    def find_class(self, module, name):
        raise Reached("global")
    def persistent_load(self, pid):
        return Anything

class PyRecorder(pickle._Unpickler):  # the pure-Python unpickler joblib and dill subclass
    def find_class(self, module, name):
        raise Reached("global" if all(p.isidentifier() for p in module.split(".")) else "import-only")
    def persistent_load(self, pid):
        return Anything

class Slow(BaseException):
    pass

def on_alarm(signum, frame):
    raise Slow("timeout")

signal.signal(signal.SIGALRM, on_alarm)

def load_one(read, encoding):
    try:
        signal.setitimer(signal.ITIMER_REAL, 2.0)  # a huge memo resize can take seconds: say so
        try:
            value = read(encoding)
            return ["stop", type(value).__name__]
        except Reached as exc:
            return [str(exc), ""]
        except Exception as exc:
            return ["error", f"{type(exc).__name__}: {str(exc)[:120]}"]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Slow:  # also when the alarm fires while an error is being handled
        return ["timeout", ""]

REAL_IMPORT = builtins.__import__

def deny_import(*args, **kwargs):
    raise Reached("global")  # find_class's PyImport_Import calls builtins.__import__ first

def from_bytes(data, encoding):
    builtins.__import__ = deny_import
    try:
        return pickle.loads(data, encoding=encoding)
    finally:
        builtins.__import__ = REAL_IMPORT

def load(data, encoding):
    # Four readers: three C ones that treat FRAMEs differently (a file without peek, as torch
    # reads; a buffered file, as open(); bytes in memory) and the pure-Python unpickler
    # (joblib, dill), whose parsers differ. The most dangerous outcome wins.
    outcomes = [
        load_one(lambda enc: Recorder(io.BytesIO(data), encoding=enc).load(), encoding),
        load_one(lambda enc: Recorder(io.BufferedReader(io.BytesIO(data)), encoding=enc).load(), encoding),
        load_one(lambda enc: from_bytes(data, enc), encoding),
        load_one(lambda enc: PyRecorder(io.BytesIO(data), encoding=enc).load(), encoding),
    ]
    for kind in ("global", "timeout", "stop", "import-only"):
        for outcome in outcomes:
            if outcome[0] == kind:
                return outcome
    return outcomes[0]

for line in sys.stdin:  # one JSON request per line: {"inputs": [hex...], "encoding": ...}
    batch = json.loads(line)
    print(json.dumps([load(bytes.fromhex(h), batch["encoding"]) for h in batch["inputs"]]), flush=True)
"""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What CPython did with one input: ``global``, ``stop``, ``error`` or ``timeout`` (undecided).

    ``import-only``: only the pure-Python unpickler called find_class, with a module name that
    cannot be imported (it then raises before any call).
    """

    outcome: str
    detail: str

    @property
    def reached(self) -> bool:
        """True when ``find_class`` was called."""
        return self.outcome == "global"


class Oracle:
    """A persistent worker process: many small requests cost one process start."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # CPython prints "exported buffers" notices for some soups
            text=True,
        )

    def load(self, inputs: list[bytes], encoding: str = "ASCII") -> list[Loaded]:
        """Load every input with the recording unpickler and report each outcome."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"inputs": [d.hex() for d in inputs], "encoding": encoding}) + "\n")
        self._proc.stdin.flush()
        return [Loaded(outcome, detail) for outcome, detail in json.loads(self._proc.stdout.readline())]

    def close(self) -> None:
        """End the worker."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
