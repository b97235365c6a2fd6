"""Write the whole test corpus to a directory: ``build_corpus(dir) -> list[Case]``.

Layout: ``<dir>/malicious/...`` and ``<dir>/benign/...``; the marker file every
payload would create is ``<dir>/PWNED_MARKER`` unless another path is given.
Output is deterministic for a given marker path (fixed seeds, fixed
timestamps). Cases whose library (``needs``) is not installed are left out.
:func:`shared_corpus` builds once per process so that torch runs each recipe
once per test session. Not handled here: scanning.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.corpus.benign import BENIGN
from tests.corpus.container_loader_cases import LOADER_BENIGN, LOADER_CASES
from tests.corpus.folder_config_cases import FOLDER_APPROVED, FOLDER_BLOCKED
from tests.corpus.joblib_numpy_cases import JOBLIB_APPROVED, JOBLIB_BLOCKED
from tests.corpus.malicious import PICKLES
from tests.corpus.malicious_containers import CONTAINERS
from tests.corpus.pickle_grammar_cases import GRAMMAR
from tests.corpus.realrepo_cases import REAL_REPO_APPROVED, REAL_REPO_BLOCKED
from tests.corpus.spec import CaseSpec, Expected, Payload
from tests.corpus.template_keras_cases import TEMPLATE_APPROVED, TEMPLATE_BLOCKED

MARKER_NAME = "PWNED_MARKER"


@dataclass(frozen=True, slots=True)
class Case:
    """One corpus file and what a sane scanner must decide about it."""

    name: str
    group: str
    path: Path
    expected: Expected
    reference: str
    incomplete_ok: bool = False


@dataclass(frozen=True, slots=True)
class Corpus:
    """A built corpus: its root, the marker path and its cases."""

    root: Path
    marker: Path
    cases: tuple[Case, ...]

    def of(self, expected: Expected) -> tuple[Case, ...]:
        """The cases with this expectation."""
        return tuple(c for c in self.cases if c.expected == expected)

    def group(self, relpath: str) -> tuple[Case, ...]:
        """The files one recipe (``CaseSpec.relpath``) wrote."""
        return tuple(c for c in self.cases if c.group == relpath)


def all_specs() -> tuple[CaseSpec, ...]:
    """Every case recipe, malicious first."""
    return (
        *PICKLES,
        *CONTAINERS,
        *LOADER_CASES,
        *GRAMMAR,
        *JOBLIB_BLOCKED,
        *TEMPLATE_BLOCKED,
        *REAL_REPO_BLOCKED,
        *FOLDER_BLOCKED,
        *BENIGN,
        *LOADER_BENIGN,
        *JOBLIB_APPROVED,
        *TEMPLATE_APPROVED,
        *REAL_REPO_APPROVED,
        *FOLDER_APPROVED,
    )


def _available(spec: CaseSpec) -> bool:
    return spec.needs is None or importlib.util.find_spec(spec.needs) is not None


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def build_corpus(directory: Path, marker: Path | None = None, specs: Iterable[CaseSpec] | None = None) -> list[Case]:
    """Write every available case under ``directory`` and return the cases in order."""
    payload = Payload(marker or directory / MARKER_NAME)
    cases: list[Case] = []
    for spec in all_specs() if specs is None else specs:
        if not _available(spec):
            continue
        group = directory / ("malicious" if spec.expected == "blocked" else "benign")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile's duplicate-name and torch's deprecation notices are expected
            built = spec.build(payload)
        files: Mapping[str, bytes] = {"": built} if isinstance(built, bytes) else built
        for sub, data in files.items():
            relpath = f"{spec.relpath}/{sub}" if sub else spec.relpath
            target = group / relpath
            _write(target, data)
            cases.append(Case(relpath, spec.relpath, target, spec.expected, spec.reference, spec.incomplete_ok))
    return cases


@cache
def shared_corpus() -> Corpus:
    """Build the corpus once per process in a temporary directory removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="wg-corpus-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    marker = root / MARKER_NAME
    return Corpus(root, marker, tuple(build_corpus(root, marker)))
