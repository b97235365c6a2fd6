r"""How each real zip reader finds a member by name, and the duplicates that make it ambiguous.

Two readers matter (issue 15):

* PyTorch's ``PyTorchStreamReader`` calls miniz's ``mz_zip_reader_locate_file``
  with flags 0. miniz then binary-searches the central directory, sorted
  (by an unstable heap sort) with ``MZ_TOLOWER``: names compare as raw bytes,
  ASCII ``A-Z`` folded to lower case, nothing else folded; ``/`` and ``\\`` are
  different bytes and no path is normalised. So ``archive/DATA.PKL`` is
  ``archive/data.pkl`` to torch, and among names equal under that folding the
  one found depends on the sort and the search path, not on archive order.
* Python's ``zipfile`` (``numpy.load`` of an ``.npz``, Keras ``.keras``) keys a
  dict by the name cut at its first NUL (``ZipInfo._sanitize_filename``), so the
  LAST of equal keys wins.

Where either rule sees two members under one key, which bytes a loader reads
cannot be known statically: that is a blocking finding, and every candidate is
analysed by the callers. Not handled here: reading the archive
(:mod:`weightguard.formats.archives`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from weightguard.findings import Rule
from weightguard.formats import codes


class Named(Protocol):
    """What the lookups need from a member record."""

    @property
    def name(self) -> str:
        """The decoded name."""
        ...

    @property
    def raw(self) -> bytes:
        """The name's bytes as stored in the central directory."""
        ...


M = TypeVar("M", bound=Named)


def miniz_key(raw: bytes) -> bytes:
    """The key miniz compares names by with flags 0: bytes, only ASCII letters folded."""
    return raw.lower()  # bytes.lower() folds exactly A-Z, as MZ_TOLOWER does


def zipfile_key(name: str) -> str:
    """The key Python's ``zipfile`` stores a member under: the name cut at its first NUL."""
    return name.partition("\x00")[0]


def torch_candidates(members: Iterable[M], name: str) -> list[M]:
    """Every member miniz could return for ``name`` (the full path, root included)."""
    key = miniz_key(name.encode("utf-8", "surrogateescape"))
    return [m for m in members if miniz_key(m.raw) == key]


def zipfile_choice(members: Sequence[M], name: str) -> M | None:
    """The member ``zipfile.ZipFile.getinfo(name)`` returns: the last one stored under that key."""
    for member in reversed(members):
        if zipfile_key(member.name) == name:
            return member
    return None


def duplicate_findings(members: Sequence[Named], add: Callable[..., None]) -> None:
    """Report names that share a key under either reader's rule, once per name.

    ``add(rule, message, member, **evidence)`` records one finding.
    """
    exact: dict[str, str] = {}
    folded: dict[bytes, str] = {}
    for member in members:
        seen_exact = exact.get(zipfile_key(member.name))
        seen_folded = folded.get(miniz_key(member.raw))
        if seen_exact is not None:
            rule: Rule = codes.ZIP_DUPLICATE_NAME
            add(rule, "member name appears more than once (zipfile reads the last)", member.name, other=seen_exact)
        elif seen_folded is not None:
            add(
                codes.ZIP_CASE_DUPLICATE,
                "member name equals another one ignoring ASCII case (torch's zip reader may read either)",
                member.name,
                other=seen_folded,
            )
        exact.setdefault(zipfile_key(member.name), member.name)
        folded.setdefault(miniz_key(member.raw), member.name)


__all__ = ["duplicate_findings", "miniz_key", "torch_candidates", "zipfile_choice", "zipfile_key"]
