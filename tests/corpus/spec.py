"""Records shared by the corpus generators: the harmless payload and one case's recipe.

A case is a function that returns the bytes of one file (or several files,
keyed by relative path) plus the reference it regresses. Registration is an
explicit decorator on a module-level :class:`CaseList`, read by
:mod:`tests.corpus.build`. Not handled here: writing files or scanning.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Expected = Literal["blocked", "approved"]
Built = bytes | Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Payload:
    """The only thing a malicious corpus file would ever do: create ``marker``."""

    marker: Path

    @property
    def shell(self) -> str:
        """A shell command that creates the marker."""
        return f"touch {shlex.quote(str(self.marker))}"

    @property
    def argv(self) -> list[str]:
        """The same command as an argument vector."""
        return ["touch", str(self.marker)]

    @property
    def code(self) -> str:
        """Python source that creates the marker."""
        return f"open({str(self.marker)!r}, 'w').close()"


@dataclass(frozen=True, slots=True)
class CaseSpec:
    """The recipe of one corpus case.

    Attributes:
        relpath: Where the file goes, relative to the corpus group directory; for a
            multi-file case, the directory and the builder returns a mapping.
        reference: The advisory, issue or paper the case regresses.
        build: Returns the file's bytes for a payload.
        expected: What a sane scanner must decide.
        incomplete_ok: True where "could not analyse, fails closed" (exit 2) is an
            acceptable answer instead of a rejection (documented per case).
        needs: A module the builder imports, the case is skipped when it is missing.
    """

    relpath: str
    reference: str
    build: Callable[[Payload], Built]
    expected: Expected
    incomplete_ok: bool = False
    needs: str | None = None


@dataclass(slots=True)
class CaseList:
    """An ordered list of case recipes filled by the :meth:`case` decorator."""

    expected: Expected
    specs: list[CaseSpec] = field(default_factory=list)

    def case(
        self, relpath: str, reference: str, *, incomplete_ok: bool = False, needs: str | None = None
    ) -> Callable[[Callable[[Payload], Built]], Callable[[Payload], Built]]:
        """Register the decorated builder as a case writing ``relpath``."""

        def register(build: Callable[[Payload], Built]) -> Callable[[Payload], Built]:
            if any(s.relpath == relpath for s in self.specs):
                raise ValueError(f"duplicate corpus path {relpath}")
            self.specs.append(CaseSpec(relpath, reference, build, self.expected, incomplete_ok, needs))
            return build

        return register

    def __iter__(self) -> Iterator[CaseSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)
