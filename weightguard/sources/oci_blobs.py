"""A registry pull's layers fetched in parallel, and the digests the pull vouches for (issue 17, pull cost).

**Parallel layers.** A model artifact is a few large layers (ModelPack puts each
weight file in its own ``.raw`` layer). One blob at a time leaves the registry,
the socket and the hashing waiting on each other; :func:`unpack_parallel` fetches
the ``.raw`` layers on a small bounded pool (:data:`LAYER_WORKERS` threads:
receiving, hashlib and file writes release the GIL), each into its own file in a
private staging folder beside the destination. Layers are still *applied* in
manifest order, so the result is exactly what the sequential unpacking gives:
the main thread walks the layers, unpacks each tar layer as it streams, and
moves each ``.raw`` layer's staged file into place (a rename on the same file
system, no copy) once its blob has been read whole and matched its digest. A
failing layer stops the others at their next chunk and fails the pull.

**Vouched digests.** The integrity stage would read every pulled byte again to
hash it, although the pull has just hashed those very bytes on their way to the
disk: a ``.raw`` layer's digest *is* its file's sha256, and a tar member's sha256
is computed as it is written (:class:`~weightguard.sources.oci_unpack.Unpack`
with ``record``). :func:`vouched_hashes` hands those digests to the pipeline
(:class:`~weightguard.pipeline.Prepared`-style ``known`` digests), so the
integrity stage does not hash a pulled file a second time. This keeps the
one-read guarantee of issue 16 (the verdict's digests are of exactly the bytes
analysed) because of three facts, each checked:

* the digest is of the bytes written to that file, by this process, from a
  stream whose digest matched (a mismatch fails the pull before any verdict);
* the folder is private to the run: the pull created it itself, mode 0700
  (``vouch`` is false for a folder the caller already had), so no other user can
  write, link or rename anything in it;
* the file the listing, the scan and the hashing see has the identity (device,
  inode, size, mtime, ctime) the unpacking left it with: a digest is vouched only
  when the listed file's identity equals the recorded one, the scan's descriptor
  is checked against the listed identity on every open, and
  :func:`~weightguard.integrity.hashing.hash_files` checks a file whose digest it
  reuses is still unchanged (``fstat``) after the scan. Any write to the file
  after the unpacking changes its mtime and ctime.

So the bytes the scan read are bytes of the file as written, and their digest is
the recorded one. Reusing a digest saves one sha256 pass over the model (about
0.5 s of CPU per GiB here) and one read of it.
Not handled here: HTTP and authentication (:mod:`weightguard.sources.oci_registry`),
the unpacking rules themselves (:mod:`weightguard.sources.oci_unpack`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from weightguard.integrity.hashing import FileHashes
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.oci_unpack import (
    BlobOpener,
    FetchedArtifact,
    FetchLimits,
    Unpack,
    WrittenFile,
    manifest_layers,
    raw_filepath,
    unpack_layer,
)

# Blobs received at once: one per core (2 to 4) keeps the sockets, hashing and writes of the layers
# overlapping without flooding the registry or holding many files half-written. On the 2-core machine,
# 1 GiB in 4 layers, process CPU: 1 blob at a time with a prefetch thread 1.6-1.8 s, 2 or 4 on the pool
# without one 1.3-1.6 s.
LAYER_WORKERS = max(2, min(4, os.cpu_count() or 2))


def unpack_parallel(
    manifest: object,
    digest: str,
    open_blob: BlobOpener,
    dest: Path,
    limits: FetchLimits,
    *,
    workers: int = LAYER_WORKERS,
    record: bool = False,
    open_pooled: BlobOpener | None = None,
) -> FetchedArtifact:
    """Unpack ``manifest``'s layers into ``dest`` as the sequential unpacking does, ``.raw`` blobs in parallel.

    With ``record``, the result lists each file's sha256 and identity (:class:`WrittenFile`).
    ``open_pooled`` opens the blobs fetched on the pool (default ``open_blob``): there the layers
    already overlap each other, so a blob needs no receiving thread of its own.

    Raises:
        FetchError: the manifest is an index or malformed, a layer is unsafe, unreadable or over a limit.
    """
    layers = manifest_layers(manifest, digest)
    dest.mkdir(parents=True, exist_ok=True)
    state = Unpack(dest, limits, record=record)
    raw = {i: path for i, layer in enumerate(layers) if (path := raw_filepath(layer)) is not None}
    staging = _staging(dest) if workers > 1 and len(raw) > 1 else None
    if staging is None:
        for layer in layers:
            unpack_layer(open_blob, layer, state)
    else:
        try:
            _unpack_pooled(layers, raw, (open_blob, open_pooled or open_blob), state, min(workers, len(raw)), staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    written = tuple(state.written.values())
    return FetchedArtifact(digest, len(layers), state.files, state.bytes, tuple(state.skipped), written)


def _staging(dest: Path) -> Path | None:
    """A private folder beside ``dest`` (so a rename moves a staged file into place); None if none can be made."""
    try:
        return Path(tempfile.mkdtemp(prefix=".weightguard-layers-", dir=dest.parent))  # mkdtemp: 0700
    except OSError:
        return None  # e.g. a parent that is not writable: the layers are fetched one after another instead


def _unpack_pooled(
    layers: list[dict[str, object]],
    raw: Mapping[int, str],
    openers: tuple[BlobOpener, BlobOpener],
    state: Unpack,
    workers: int,
    staging: Path,
) -> None:
    open_blob, open_pooled = openers
    for name in raw.values():
        state.path(name)  # an unsafe file name is refused before its blob is fetched
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wg-layer") as pool:
        futures: dict[int, Future[WrittenFile]] = {
            i: pool.submit(_stage, open_pooled, str(layers[i].get("digest", "")), staging / str(i), state) for i in raw
        }
        done = False
        try:
            for i, layer in enumerate(layers):
                if i in raw:
                    state.place(raw[i], staging / str(i), futures[i].result())
                else:
                    unpack_layer(open_blob, layer, state)
            done = True
        finally:
            if not done:  # the pool's exit waits for the blobs under way: make them stop now
                state.stop.set()
                for future in futures.values():
                    future.cancel()


def _stage(open_blob: BlobOpener, digest: str, path: Path, state: Unpack) -> WrittenFile:
    with open_blob(digest) as reader:  # on exit: read whole and matched its digest, or raises
        return state.receive(reader, path)


def vouched_hashes(written: Sequence[WrittenFile], files: Sequence[ArtifactFile]) -> dict[str, FileHashes]:
    """The sha256 of each listed file that is, by its identity, the file the pull wrote (see the module docstring).

    Only for a pull into a folder it created private (the caller's duty); a file whose identity
    differs from the recorded one (or that was not written by the pull) gets no digest here and
    is hashed by the integrity stage as any other.
    """
    recorded = {w.relpath: w for w in written}
    vouched = {}
    for artifact in files:
        wrote = recorded.get(artifact.relpath)
        if (
            wrote is not None
            and wrote.size == artifact.size
            and getattr(artifact.source, "identity", None) == wrote.identity
        ):
            vouched[artifact.relpath] = FileHashes(artifact.relpath, wrote.size, {"sha256": wrote.sha256})
    return vouched


__all__ = ["LAYER_WORKERS", "unpack_parallel", "vouched_hashes"]
