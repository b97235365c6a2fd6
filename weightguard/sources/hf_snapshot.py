"""``hf://org/name@REVISION`` targets: a Hugging Face Hub snapshot as a :class:`ModelSource`.

The snapshot is resolved by huggingface_hub's own ``snapshot_download``
(``local_files_only`` when ``HF_HUB_OFFLINE`` is set or the policy says
offline), so weightguard reads exactly what ``from_pretrained`` would. A
branch or tag is refused when the policy requires a 40-hex commit; otherwise
it is resolved to the commit through the cache's ``refs/`` and reported.
Entries of ``snapshots/<commit>/`` are the Hub's relative links into
``blobs/``: a link is followed only when it resolves to a regular file inside
the repo's cache folder. Relpaths are the repo paths.

The Hub's file listing (for the check in :mod:`weightguard.integrity.hub`)
comes from, in order: a file the caller names, huggingface_hub's tree cache
``trees/<commit>.json`` in the repo's cache folder, or (online only)
``HfApi.list_repo_tree``. Not handled here: hashing (blob names are claims,
the caller re-hashes in its single pass) and the check itself.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from weightguard.errors import SourceError
from weightguard.findings import Finding
from weightguard.integrity import codes as int_codes
from weightguard.integrity.hub import HubFile, HubListing, ListingError, parse_listing
from weightguard.sources import codes
from weightguard.sources.interface import ArtifactFile, ModelSource, SourceListing
from weightguard.sources.local import MappedFile, NotRegularFileError

HF_SCHEME = "hf://"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][\w.\-/]{0,254}$")
MAX_LISTING_BYTES = 64 * 2**20  # a listing of 100k files is ~20 MB; anything larger is not a listing


@dataclass(frozen=True, slots=True)
class HfUri:
    """A parsed ``hf://org/name[@revision]`` (revision defaults to ``main``)."""

    repo_id: str
    revision: str = "main"

    @property
    def pinned(self) -> bool:
        """True when the revision is a full 40-hex commit."""
        return COMMIT.match(self.revision) is not None


def parse_hf_uri(uri: str) -> HfUri:
    """Parse ``hf://org/name@REVISION``.

    Raises:
        SourceError: not an hf:// URI, or a repo id or revision that could name a path outside the cache.
    """
    if not uri.startswith(HF_SCHEME):
        raise SourceError(f"not an hf:// target: {uri}")
    repo_id, _, revision = uri.removeprefix(HF_SCHEME).partition("@")
    revision = revision or "main"
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise SourceError(f"invalid Hugging Face repo id {repo_id!r}", hint="use hf://org/name@<40-hex commit>")
    # huggingface_hub joins the revision to refs/: '..' or empty components would leave the cache.
    if not _REVISION.match(revision) or any(p in ("", ".", "..") for p in revision.split("/")):
        raise SourceError(f"invalid revision {revision!r}", hint="use a 40-hex commit or a branch/tag name")
    return HfUri(repo_id, revision)


def hub_cache_dir() -> Path:
    """The Hub cache folder, read from the environment now (huggingface_hub reads it once at import)."""
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants  # noqa: PLC0415 - imported only for hf:// targets

    return Path(constants.HF_HUB_CACHE)


def offline_from_env() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True, slots=True)
class HfSnapshot:
    """A resolved snapshot: its files, the Hub listing for its commit, and what was refused."""

    uri: HfUri
    commit: str
    listing: SourceListing
    hub: HubListing | None
    hub_findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class HfSnapshotSource(ModelSource):
    """An ``hf://`` target resolved through huggingface_hub's cache.

    Attributes:
        target: ``hf://org/name@REVISION``.
        require_commit: Refuse branches and tags (policy ``require_pinned_revision``).
        offline: Never contact the Hub (also implied by ``HF_HUB_OFFLINE``).
        allow_missing_listing: Report a missing Hub listing as info instead of an error.
        cache_dir: Hub cache folder (default: ``HF_HUB_CACHE`` read at call time).
        listing_path: A saved Hub listing to use instead of the cache's or the Hub's.
    """

    target: str
    require_commit: bool = False
    offline: bool = False
    allow_missing_listing: bool = False
    cache_dir: Path | None = None
    listing_path: Path | None = None
    _parsed: HfUri = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parsed", parse_hf_uri(self.target))

    @property
    def uri(self) -> str:
        """The target as given."""
        return self.target

    def collect(self) -> SourceListing:
        """List the snapshot's files (see :meth:`resolve` for the Hub listing)."""
        return self.resolve().listing

    def resolve(self) -> HfSnapshot:
        """Resolve the revision, list the snapshot's files and load the Hub listing.

        Raises:
            SourceError: the snapshot cannot be found or downloaded.
        """
        uri = self._parsed
        if not uri.pinned and self.require_commit:
            refused = int_codes.REVISION_REFUSED.at(
                self.target, f"revision {uri.revision!r} is not a 40-hex commit", revision=uri.revision
            )
            return HfSnapshot(uri, "", SourceListing(self.target, (), (refused,)), None)
        cache = self.cache_dir or hub_cache_dir()
        snapshot = self._download(uri, cache)
        commit = snapshot.name
        storage = snapshot.parent.parent
        if not COMMIT.match(commit) or (uri.pinned and commit != uri.revision):
            raise SourceError(f"huggingface_hub returned an unexpected snapshot folder {snapshot}")
        findings: list[Finding] = []
        if not uri.pinned:
            findings.append(
                int_codes.REVISION_NOT_PINNED.at(
                    self.target, f"{uri.revision!r} resolved to commit {commit}", commit=commit
                )
            )
        files = _walk(snapshot, storage.resolve(), findings)
        hub, hub_findings = self._listing(uri, storage, commit)
        return HfSnapshot(uri, commit, SourceListing(str(snapshot), files, tuple(findings)), hub, hub_findings)

    def _download(self, uri: HfUri, cache: Path) -> Path:
        from huggingface_hub import snapshot_download  # noqa: PLC0415 - imported only for hf:// targets
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError  # noqa: PLC0415

        offline = self.offline or offline_from_env()
        try:
            path = snapshot_download(uri.repo_id, revision=uri.revision, cache_dir=cache, local_files_only=offline)
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
            where = "in the local cache" if offline else "on the Hub or in the cache"
            raise SourceError(
                f"cannot resolve {self.target} {where} ({cache}): {type(exc).__name__}: {exc}",
                hint="download it once online, or check HF_HUB_CACHE and the revision",
            ) from exc
        return Path(path)

    def _listing(self, uri: HfUri, storage: Path, commit: str) -> tuple[HubListing | None, tuple[Finding, ...]]:
        candidates = [self.listing_path] if self.listing_path else [storage / "trees" / f"{commit}.json"]
        reason = "no saved listing"
        for path in candidates:
            try:
                with path.open("rb") as fh:
                    data = fh.read(MAX_LISTING_BYTES + 1)
            except FileNotFoundError:
                reason = f"no saved listing at {path}"
                continue
            except OSError as exc:
                reason = f"cannot read {path}: {exc.strerror or exc}"
                break
            if len(data) > MAX_LISTING_BYTES:
                reason = f"{path} is larger than {MAX_LISTING_BYTES} bytes"
                break
            try:
                return parse_listing(data, str(path)), ()
            except ListingError as exc:
                reason = exc.message
                break
        else:
            if not (self.offline or offline_from_env()) and self.listing_path is None:
                online, reason = _listing_from_hub(uri.repo_id, commit)
                if online is not None:
                    return online, ()
        return None, (self._unavailable(reason),)

    def _unavailable(self, reason: str) -> Finding:
        if self.allow_missing_listing:
            return int_codes.HUB_UNVERIFIED.at(self.target, f"Hub hashes not checked: {reason}", reason=reason)
        return int_codes.HUB_LISTING_UNAVAILABLE.at(self.target, f"no Hub listing: {reason}", reason=reason)


def _listing_from_hub(repo_id: str, commit: str) -> tuple[HubListing | None, str]:
    from huggingface_hub import HfApi  # noqa: PLC0415 - imported only for hf:// targets
    from huggingface_hub.errors import HfHubHTTPError  # noqa: PLC0415
    from huggingface_hub.hf_api import RepoFile  # noqa: PLC0415

    try:
        tree = HfApi().list_repo_tree(repo_id, revision=commit, recursive=True)
        files = {
            f.path: HubFile(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs is not None else None)
            for f in tree
            if isinstance(f, RepoFile)
        }
    except (HfHubHTTPError, OSError, ValueError) as exc:
        return None, f"the Hub listing could not be fetched: {type(exc).__name__}: {exc}"
    return HubListing(files, f"https://huggingface.co/api/models/{repo_id}/tree/{commit}"), ""


def _walk(snapshot: Path, storage: Path, findings: list[Finding]) -> tuple[ArtifactFile, ...]:
    files: list[ArtifactFile] = []
    for dirpath, dirnames, filenames in os.walk(snapshot, followlinks=False):
        dirnames.sort()
        linked_dirs = [d for d in dirnames if Path(dirpath, d).is_symlink()]
        for name in sorted(filenames) + linked_dirs:
            full = Path(dirpath, name)
            rel = full.relative_to(snapshot).as_posix()
            item = _entry(full, rel, storage, findings)
            if item is not None:
                files.append(item)
    files.sort(key=lambda f: Path(f.relpath).parts)
    return tuple(files)


def _entry(full: Path, rel: str, storage: Path, findings: list[Finding]) -> ArtifactFile | None:
    try:
        st = full.lstat()
        target = full
        if stat.S_ISLNK(st.st_mode):
            # The Hub's own links point to ../../blobs/<etag>; anything resolving elsewhere is refused.
            target = full.resolve()
            if not target.is_relative_to(storage) or not target.is_file():
                findings.append(
                    int_codes.SNAPSHOT_LINK_ESCAPES.at(
                        rel, "link does not resolve to a file in the repo cache", target=str(full.readlink())
                    )
                )
                return None
            st = target.stat()
        if not stat.S_ISREG(st.st_mode):
            findings.append(codes.SPECIAL_FILE.at(rel, "not a regular file"))
            return None
        source = MappedFile(target)
    except NotRegularFileError:
        findings.append(codes.SPECIAL_FILE.at(rel, "not a regular file when opened"))
        return None
    except OSError as exc:
        findings.append(codes.UNREADABLE.at(rel, f"cannot read: {exc.strerror or exc}"))
        return None
    return ArtifactFile(rel, source.size, source)
