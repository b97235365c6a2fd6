"""Ask CPython's own ``_pickle`` whether loading bytes reaches ``find_class`` (in a subprocess).

The worker subclasses :class:`pickle.Unpickler`: ``find_class``
only records that it was reached and raises, so nothing is ever imported or called;
``persistent_load`` returns a harmless stand-in type (as permissive as torch's loaders).
It runs in a separate process with an address-space limit (a hostile memo index makes
CPython allocate gigabytes), and takes a whole batch of inputs at once (one process per
input would cost ~30 ms each). Copyreg extension codes 1-3 are registered in the worker
so that EXT opcodes reach ``find_class`` too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

_WORKER = r"""
import copyreg, io, json, pickle, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
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

out = []
batch = json.load(sys.stdin)
for hexdata in batch["inputs"]:
    data = bytes.fromhex(hexdata)
    try:
        value = Recorder(io.BytesIO(data), encoding=batch["encoding"]).load()
        out.append(["stop", type(value).__name__])
    except Reached as exc:
        out.append([str(exc), ""])
    except BaseException as exc:
        out.append(["error", f"{type(exc).__name__}: {str(exc)[:120]}"])
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What CPython did with one input: ``global``, ``stop`` or ``error``."""

    outcome: str
    detail: str

    @property
    def reached(self) -> bool:
        """True when ``find_class`` was called."""
        return self.outcome == "global"


def cpython_load(inputs: list[bytes], encoding: str = "ASCII") -> list[Loaded]:
    """Load every input with a recording unpickler in ONE subprocess and report each outcome."""
    request = json.dumps({"inputs": [d.hex() for d in inputs], "encoding": encoding})
    done = subprocess.run(
        [sys.executable, "-c", _WORKER], input=request, capture_output=True, text=True, timeout=120, check=True
    )
    return [Loaded(outcome, detail) for outcome, detail in json.loads(done.stdout)]
