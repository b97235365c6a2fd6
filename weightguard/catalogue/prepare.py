"""verify-many's first phase: list and hash every model, and find the models whose verdict is cached.

Models go in chunks of :data:`CHUNK_MODELS`. A model in a plain folder (only
regular files and real directories, see
:func:`~weightguard.sources.local.plain_files`) is looked up by its listing
and its files' digests alone: the full resolution would list the same files
with no finding, so the key is the one it would compute. Each of its files
is opened, read, hashed and closed in one go, by this thread and a helper
(:func:`~weightguard.integrity.path_hashing.hash_paths`); under
``--trust-file-metadata`` a file whose stamp is unchanged is not read. Other
models (Hub and ``oci://`` targets, folders holding links or special files),
and the plain ones whose key is not in the cache, are resolved in full as
:func:`weightguard.pipeline.verify` resolves them, reusing those digests: no
file is read twice. A warm re-run thus costs, per model, a listing, one read
of each file, a digest and a look-up.

An ``oci://`` target is pulled here, once, into its own private folder under
``Settings.pulls`` (the runner owns that folder and removes each model's pull
when its model unit has ended); the pull's digest-checked sha256 stand for the
files' (:func:`~weightguard.sources.oci_blobs.vouched_hashes`). Its verdict is
keyed like a folder's, by the pinned URI and the files' digests, after the
pull: the manifest digest pins every byte, so nothing the key leaves out can
change the verdict (unlike a Hub listing). It is never looked up by folder
metadata: a fresh pull has fresh stamps, so ``--trust-file-metadata`` neither
reads nor records them. A key taken from the manifest digest alone, before
pulling, would also save the pull; it is not done, as Hub revisions are not
keyed either (the files are always checked as they are now).

Tried and measured: hashing chunk *k+1* in a thread while this one finishes
chunk *k* gained nothing on two cores. The reader needs the GIL back after
every read and digest, and this thread's bookkeeping holds it for the whole
switch interval; both threads hashing together, then the bookkeeping, is as
fast and simpler.
Not handled here: running units, storing results (:mod:`.runner`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from weightguard.catalogue.cache import CachedResult, FileStamp, ResultsCache
from weightguard.catalogue.interface import CatalogueEntry, UnitKind
from weightguard.catalogue.memo import recall, recalled, remember, stamp_of
from weightguard.errors import IntegrityError, SourceError, WeightguardError
from weightguard.integrity.hashing import FileHashes, HashRequest, covers, hash_files
from weightguard.integrity.hub import hub_request
from weightguard.integrity.path_hashing import hash_paths
from weightguard.integrity.pins import hash_request
from weightguard.pipeline import VerifyOptions, resolve_target
from weightguard.policy.load import LoadedPolicy
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.local import plain_files

# Models listed and hashed together: a bounded group keeps the listings held in memory bounded
# on catalogues of thousands of models (a listed file holds no descriptor until it is read, and
# hashing holds at most OPEN_STREAMS), and progress moves once per chunk.
CHUNK_MODELS = 64


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a prepared model."""

    relpath: str
    sha256: str
    size: int
    path: str
    hashes: FileHashes  # its relpath is whatever it was hashed under (a model unit's copy gets ``relpath``)


@dataclass(frozen=True, slots=True)
class PreparedModel:
    """A model after the hashing phase: its files' content keys, or why it has none.

    ``key`` is empty for a model whose verdict is never reused (see :func:`model_cacheable`).
    """

    entry: CatalogueEntry
    files: tuple[ModelFile, ...] = ()
    key: str = ""
    error: str = ""
    scratch: str = ""  # an oci:// target's own temporary folder: the runner removes it when the model's work ends
    pulled: str = ""  # the folder inside it holding the pulled model
    pinned: str = ""  # the oci:// URI pinned to the manifest digest that was pulled


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk of models after the hashing phase, in catalogue order."""

    models: list[PreparedModel]
    read_files: int  # files whose bytes were read to hash them
    cached: dict[str, CachedResult]  # the cached model results among the chunk's keys


@dataclass(frozen=True, slots=True)
class Settings:
    """What every chunk needs besides its entries."""

    loaded: LoadedPolicy
    cache: ResultsCache
    converts: bool  # the policy converts (then the copy on disk is an input no key captures)
    trust_metadata: bool  # --trust-file-metadata: the cache also remembers files' stamps
    registry: VerifyOptions = VerifyOptions()  # registry access for oci:// targets (auth file, insecure hosts, CA)
    pulls: Path | None = None  # where oci:// targets are pulled (one folder each); None: they are refused
    refusal: str = "oci:// targets cannot be pulled in this run"  # why, when ``pulls`` is None
    trust: str = field(init=False)  # digests of the trust material the policy names by path

    def __post_init__(self) -> None:
        object.__setattr__(self, "trust", json.dumps(_trust_digests(self.loaded), sort_keys=True))


def _trust_digests(loaded: LoadedPolicy) -> dict[str, str]:
    """Digests of the trust material the policy names by path (it is not part of the policy's digest)."""
    base = loaded.base_dir
    out: dict[str, str] = {}
    for signer in loaded.policy.spec.signatures.trusted_signers:
        for name in ("public_key", "root", "trusted_root"):
            rel = getattr(signer, name, None)
            if isinstance(rel, Path):
                try:
                    out[str(rel)] = hashlib.sha256((base / rel).read_bytes()).hexdigest()
                except OSError:
                    out[str(rel)] = "unreadable"
    return out


def model_cacheable(target: str, settings: Settings) -> bool:
    """Whether a verdict on ``target`` may be reused.

    A Hub listing, a probe base model and the converted copy on disk are inputs the key does
    not capture: those models are judged again (their files' scans are still reused). An
    ``oci://`` pull is keyed by its pinned URI and its files, which is all its verdict depends on.
    """
    probes = settings.loaded.policy.spec.probes
    return not target.startswith("hf://") and not (probes.run != "off" and probes.base_model) and not settings.converts


def _model_key(target: str, uri: str, files: Sequence[ModelFile], source: Sequence[str], trust: str, day: str) -> str:
    """Everything a model's verdict depends on besides the policy and the version (cache columns)."""
    # The day: policy ignores expire by date, so a verdict is reused on the day it was made only.
    identity = [target, uri, [[f.relpath, f.size, f.sha256] for f in files], list(source), day, trust]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def _hash_request(loaded: LoadedPolicy, entries: Sequence[CatalogueEntry]) -> HashRequest:
    """Everything the model units' integrity stage will want, so that it reads no file again."""
    request = HashRequest().union(hash_request(loaded.policy.spec.integrity))
    if any(e.target.startswith("hf://") for e in entries):
        request = hub_request(request)
    return request


@dataclass(frozen=True, slots=True)
class _Listing:
    """A chunk's plain folders, listed, with the digests already known and the paths left to read."""

    entries: Sequence[CatalogueEntry]
    request: HashRequest
    folders: dict[int, tuple[str, list[tuple[str, os.DirEntry[str]]]]]  # by index: (uri, files)
    recalled: dict[str, FileHashes]  # by path: digests remembered under an unchanged stamp
    stamps: dict[str, tuple[str, FileStamp]]  # by path: the stamps taken before reading
    todo: list[str]  # paths to read and hash


def _list(entries: Sequence[CatalogueEntry], settings: Settings) -> _Listing:
    request = _hash_request(settings.loaded, entries)
    folders: dict[int, tuple[str, list[tuple[str, os.DirEntry[str]]]]] = {}
    if model_cacheable("", settings):
        for i, entry in enumerate(entries):
            if not entry.target.startswith(("hf://", "oci://")):
                uri = str(Path(entry.target))
                found = plain_files(uri)
                if found is not None:
                    folders[i] = (uri, found)
    everything = {e.path: e for _, found in folders.values() for _, e in found}
    known: dict[str, FileHashes] = {}
    stamps: dict[str, tuple[str, FileStamp]] = {}
    if settings.trust_metadata:
        for path, e in everything.items():
            try:
                now = stamp_of(e.stat(follow_symlinks=False))
            except OSError:
                continue
            if now is not None:
                stamps[path] = (path, now)
        recorded = settings.cache.get_digests(stamps)
        for path, (_, now) in stamps.items():
            held = recalled(path, now, recorded.get(path), request)
            if held is not None:
                known[path] = held
    return _Listing(entries, request, folders, known, stamps, [p for p in everything if p not in known])


def _finish(listing: _Listing, hashed: dict[str, FileHashes], settings: Settings, day: str) -> Chunk:
    """Key and look up the plain folders; resolve the rest in full, reusing every digest."""
    entries, request, loaded = listing.entries, listing.request, settings.loaded
    if settings.trust_metadata:
        remember(settings.cache, hashed, listing.stamps)
    digests = {**listing.recalled, **hashed}
    candidates: dict[str, tuple[int, tuple[ModelFile, ...]]] = {}
    for i, (uri, found) in listing.folders.items():
        if any(e.path not in digests for _, e in found):
            continue  # a file could not be read: the full resolution reports it
        files = tuple(
            ModelFile(rel, h.digests["sha256"], h.size, e.path, h) for rel, e in found for h in [digests[e.path]]
        )
        candidates[_model_key(entries[i].target, uri, files, [], settings.trust, day)] = (i, files)
    cached = settings.cache.get_many(UnitKind.MODEL, candidates) if candidates else {}
    out = {i: PreparedModel(entries[i], files, key) for key, (i, files) in candidates.items() if key in cached}

    resolved: list[tuple[int, Path, list[ArtifactFile], list[str], str]] = []
    pulled_at: dict[int, tuple[str, str, str]] = {}  # oci:// models by index: (scratch, folder, pinned uri)
    known: dict[str, FileHashes] = {}
    for i, entry in enumerate(entries):
        if i in out:
            continue
        scratch = ""
        try:
            options = settings.registry
            if entry.target.startswith("oci://"):
                scratch, options = _pull_options(settings)
            target = resolve_target(entry.target, loaded, options)
        except WeightguardError as exc:
            out[i] = PreparedModel(entry, error=exc.diagnostics(), scratch=scratch)
            continue
        if scratch:
            pulled_at[i] = (scratch, str(target.root), target.uri)
            # What the pull wrote and digest-checked is not read again (when its sha256 is all that is asked).
            known.update({f"{i}/{rel}": h for rel, h in target.known.items() if covers(h, request)})
        source = [
            f"{f.code}|{f.path}|{f.member}|{f.message}" for f in (*target.listing.findings, *target.extra_findings)
        ]
        renamed = [ArtifactFile(f"{i}/{a.relpath}", a.size, a.source) for a in target.listing.files]
        resolved.append((i, target.root, renamed, source, target.uri))
    everything = [a for r in resolved for a in r[2]]
    places = [(a, f"{root}/{a.relpath.split('/', 1)[1]}") for _, root, renamed, _, _ in resolved for a in renamed]
    known.update({a.relpath: h for a, path in places if (h := digests.get(path)) is not None})
    stamps: dict[str, tuple[str, FileStamp]] = {}
    if settings.trust_metadata:
        # A pull's files are new on every run: their stamps would never be met again.
        pulls = {f"{i}/" for i in pulled_at}
        local = [p for p in places if p[0].relpath not in known and not p[0].relpath.startswith(tuple(pulls))]
        recalled_now, stamps = recall(local, settings.cache, request)
        known.update(recalled_now)
    try:
        hashes = hash_files(everything, request, known=known)
    except IntegrityError:
        hashes = {}  # one model's file changed while hashed: hash model by model to find which
    if settings.trust_metadata and hashes:
        remember(settings.cache, hashes, stamps)
    for i, root, renamed, source, uri in resolved:
        entry = entries[i]
        try:
            mine = (
                {a.relpath: hashes[a.relpath] for a in renamed} if hashes else hash_files(renamed, request, known=known)
            )
        except IntegrityError as exc:
            out[i] = PreparedModel(entry, error=exc.diagnostics(), scratch=pulled_at.get(i, ("", "", ""))[0])
            continue
        files = tuple(
            ModelFile(rel, h.digests["sha256"], a.size, f"{root}/{rel}", h)
            for a in renamed
            for rel, h in [(a.relpath.split("/", 1)[1], mine[a.relpath])]
        )
        key = _model_key(entry.target, uri, files, source, settings.trust, day)
        scratch, folder, pinned = pulled_at.get(i, ("", "", ""))
        key = key if model_cacheable(entry.target, settings) else ""
        out[i] = PreparedModel(entry, files, key, "", scratch, folder, pinned)
    cached.update(
        settings.cache.get_many(UnitKind.MODEL, [p.key for p in out.values() if p.key and p.key not in cached])
    )
    read = len(hashed) + len(everything) - len(known)
    return Chunk([out[i] for i in range(len(entries))], read, cached)


def _pull_options(settings: Settings) -> tuple[str, VerifyOptions]:
    """A new private folder for one ``oci://`` pull, and the options that pull into it.

    Raises:
        SourceError: the run cannot pull (see ``Settings.refusal``), or the folder cannot be made.
    """
    if settings.pulls is None:
        raise SourceError(settings.refusal)
    try:
        folder = Path(tempfile.mkdtemp(dir=settings.pulls))  # 0700; the pull makes "model" inside it
    except OSError as exc:
        raise SourceError(f"cannot make a folder to pull into under {settings.pulls}: {exc}") from exc
    # The folder is the model's scratch (removed whole); the model itself lives in its "model" child.
    return str(folder), dataclasses.replace(settings.registry, oci_dir=folder / "model")


def prepare(entries: Sequence[CatalogueEntry], settings: Settings) -> Iterator[Chunk]:
    """Yield the catalogue's models chunk by chunk, hashed and looked up.

    No thread of this module's outlives a chunk: between chunks, the caller may fork.

    Raises:
        WeightguardError: the results cache cannot be read or written.
    """
    day = dt.datetime.now(dt.UTC).date().isoformat()
    for start in range(0, len(entries), CHUNK_MODELS):
        listing = _list(entries[start : start + CHUNK_MODELS], settings)
        yield _finish(listing, hash_paths(listing.todo, listing.request), settings, day)


__all__ = ["CHUNK_MODELS", "Chunk", "ModelFile", "PreparedModel", "Settings", "model_cacheable", "prepare"]
