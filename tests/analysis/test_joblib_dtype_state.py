"""A joblib wrapper's dtype state reaches numpy's ``__setstate__`` only in the shapes numpy writes.

numpy's C ``__setstate__`` trusts its argument: the differential campaign (seed 101, indexes 18010
and 42273) found mutated joblib files whose dtype state crashed the scanner with SIGSEGV. Each
check runs in a subprocess, so a regression shows as a crash of that process, not of the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weightguard.analysis.joblib_wrapper import numpy_dtype
from weightguard.analysis.opcodes import GlobalRef, Made, SymDict

REPO = Path(__file__).resolve().parents[2]
_CHECK = """
import sys
from weightguard.analysis.joblib_wrapper import numpy_dtype
from weightguard.analysis.opcodes import GlobalRef, Made
made = Made(GlobalRef("numpy", "dtype", 0, "GLOBAL"), eval(sys.argv[1]))
made.state = eval(sys.argv[2])
print(numpy_dtype(made))
"""


@pytest.mark.parametrize(
    ("args", "state"),
    [
        (("O8", False, True), (3, "|", 20046, -1, -1, 63)),  # seed 101 index 18010: six fields, an int subarray
        (("f4", False, True), (3, "<", None, -1, -1, 0)),
        (("V8", False, True), (3, "|", None, ("a",), {"a": (1, 0)}, 8, 1, 0)),
        (("V8", False, True), (3, "|", None, ("a", "b"), {"a": (np.dtype("f8"), 0)}, 8, 1, 0)),
        (("f8", False, True), (3, "<", None, None, None, -1, -1, 63)),  # object flags on a float
        (("V4", False, True), (3, "|", (np.dtype("i2"), (3,)), None, None, 4, 2, 0)),  # subarray larger than the item
    ],
)
def test_a_dtype_state_numpy_never_writes_is_not_understood_and_never_crashes(args: object, state: object) -> None:
    run = subprocess.run(  # noqa: S603 - our interpreter, our arguments
        [sys.executable, "-c", _CHECK, repr(args), repr(state).replace("dtype(", "__import__('numpy').dtype(")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "None"


@pytest.mark.parametrize(
    "dtype",
    [np.dtype("<U5"), np.dtype("S3"), np.dtype("O"), np.dtype(">f8"), np.dtype("M8[s]"), np.dtype(("i2", (2,))),
     np.dtype([("a", "<i4"), ("b", "<f8")]), np.dtype([("a", "<i4"), ("b", "<f8")], align=True)],
)  # fmt: skip
def test_every_dtype_numpy_itself_pickles_is_rebuilt(dtype: np.dtype) -> None:
    assert numpy_dtype(_symbolic(dtype)) == dtype


def _symbolic(value: object) -> object:
    """``value`` as the walker holds it after unpickling: dtypes as calls of numpy.dtype, dicts as SymDict."""
    if isinstance(value, np.dtype):
        _, args, state = value.__reduce__()
        made = Made(GlobalRef("numpy", "dtype", 0, "GLOBAL"), _symbolic(args))
        made.state = _symbolic(state)
        return made
    if isinstance(value, tuple):
        return tuple(_symbolic(v) for v in value)
    if isinstance(value, dict):
        return SymDict.of([x for k, v in value.items() for x in (k, _symbolic(v))])
    return value
