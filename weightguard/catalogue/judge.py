"""A model's verdict from its files' scans: :func:`weightguard.pipeline.verify` with inputs made elsewhere.

The catalogue runner hashes every file once and scans each distinct content
once; a model unit then hands those scans and digests to ``verify`` (through
:class:`~weightguard.pipeline.Prepared`), which runs every later stage exactly
as ``weightguard verify`` does: integrity and signatures (computing only the
digests the runner did not), conversion when the policy asks, probes, and the
policy's judgement. There is one orchestrator, so a model gets the same
verdict from either command. An ``oci://`` target is judged in the folder the
runner pulled it into, listed as ``verify`` lists a pull, never pulled again
(the files would have to be hashed again, and a registry could answer otherwise).
Not handled here: scanning (the file units), caching, attestations (``verify-many``
writes none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from weightguard.analysis.scanner import FileScan
from weightguard.catalogue.codec import relocate
from weightguard.errors import AnalysisError
from weightguard.integrity.hashing import FileHashes
from weightguard.pipeline import Prepared, ResolvedTarget, VerifyOptions, resolve_target, verify
from weightguard.policy.load import LoadedPolicy
from weightguard.report.model import Report


def scans_for(resolved: ResolvedTarget, files: Mapping[str, str], scans: Mapping[str, FileScan]) -> dict[str, FileScan]:
    """The scans of ``resolved``'s files by relpath, each moved to its relative path.

    Raises:
        AnalysisError: the model's files are not those hashed when the run started.
    """
    listed = [f.relpath for f in resolved.listing.files]
    if sorted(listed) != sorted(files):
        raise AnalysisError(f"the files of {resolved.name} changed while the catalogue was being verified")
    out: dict[str, FileScan] = {}
    for artifact in resolved.listing.files:
        scan = scans.get(files[artifact.relpath])
        if scan is None or scan.size != artifact.size:
            raise AnalysisError(f"{resolved.name}/{artifact.relpath}: no scan of its current content")
        out[artifact.relpath] = relocate(scan, artifact.relpath)
    return out


def judge_model(
    target: str,
    loaded: LoadedPolicy,
    hashes: Sequence[FileHashes],
    scans: Mapping[str, FileScan],
    *,
    convert_dir: Path | None = None,
    pulled: tuple[Path, str] | None = None,
) -> Report:
    """Judge ``target`` from the digests of its files and the scans of their contents.

    Args:
        target: The model, as ``verify`` takes it.
        loaded: The policy.
        hashes: Every file's digests as the runner computed them; their sha256 keys the scans,
            and the runner scanned exactly the bytes it hashed.
        scans: Scans by sha256 (at a placeholder path; see :mod:`.codec`).
        convert_dir: Where conversion writes, when the policy converts.
        pulled: For an ``oci://`` target, the folder the runner pulled it into and the URI
            pinned to the manifest digest it unpacked.

    Raises:
        SourceError: the target cannot be resolved.
        AnalysisError: the target's files changed since they were hashed.
    """
    if pulled is not None:
        from weightguard.sources.oci_target import list_pulled  # noqa: PLC0415 - httpx only for oci:// targets

        listed = list_pulled(pulled[1], pulled[0])
        resolved = ResolvedTarget(listed.uri, listed.name, listed.folder, listed.listing)
    else:
        resolved = resolve_target(target, loaded)
    files = {h.relpath: h.digests["sha256"] for h in hashes}
    prepared = Prepared(resolved, scans_for(resolved, files, scans), {h.relpath: h for h in hashes})
    return verify(target, loaded, VerifyOptions(convert_dir=convert_dir), prepared=prepared)


__all__ = ["judge_model", "scans_for"]
