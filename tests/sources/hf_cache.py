"""Build a Hugging Face Hub cache exactly as huggingface_hub lays it out, from bytes (no download).

``<cache>/models--{org}--{name}/refs/main`` holds the commit (no newline);
``blobs/<etag>`` holds each content, named by its sha256 (LFS files) or its
git blob sha1 (small files); ``snapshots/<commit>/<path>`` are relative links
to ``../../blobs/<etag>``; ``trees/<commit>.json`` is huggingface_hub's own
tree-listing cache. :meth:`HubCache.api_listing` is the same listing in the
shape of the Hub's ``/api/models/{repo}/tree/{commit}?recursive=1`` answer.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

COMMIT = "4f1b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6"
REPO = "weightguard-test/toy"
FILES: dict[str, bytes] = {
    "config.json": b'{"model_type": "toy", "hidden_size": 8}\n',
    "model.safetensors": b'\x10\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{}}' + bytes(range(256)) * 8,
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}\n',
}
LFS = frozenset({"model.safetensors"})  # large files live in LFS/Xet; the rest are plain git blobs


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclass
class HubCache:
    cache: Path
    repo: str = REPO
    commit: str = COMMIT
    files: dict[str, bytes] = field(default_factory=lambda: dict(FILES))

    @property
    def storage(self) -> Path:
        org, name = self.repo.split("/")
        return self.cache / f"models--{org}--{name}"

    @property
    def snapshot(self) -> Path:
        return self.storage / "snapshots" / self.commit

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path in LFS else git_blob_sha1(data)

    def blob(self, path: str) -> Path:
        return self.storage / "blobs" / self.etag(path)

    def entries(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for path, data in self.files.items():
            entry: dict[str, object] = {"type": "file", "path": path, "size": len(data)}
            if path in LFS:
                pointer = (
                    f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.etag(path)}\nsize {len(data)}\n"
                )
                entry["oid"] = git_blob_sha1(pointer.encode())
                entry["lfs"] = {"oid": self.etag(path), "size": len(data), "pointerSize": len(pointer)}
            else:
                entry["oid"] = git_blob_sha1(data)
            out.append(entry)
        return out

    def api_listing(self) -> bytes:
        return json.dumps(self.entries()).encode()

    def tree_cache(self) -> bytes:
        files = {}
        for e in self.entries():
            info: dict[str, object] = {"size": e["size"], "blob_id": e["oid"]}
            if "lfs" in e:
                lfs = e["lfs"]
                assert isinstance(lfs, dict)
                info |= {"lfs_sha256": lfs["oid"], "lfs_size": lfs["size"]}
            files[str(e["path"])] = info
        return json.dumps({"format_version": 1, "files": files}, indent=1).encode()

    def build(self, *, with_tree_cache: bool = True) -> HubCache:
        (self.storage / "refs").mkdir(parents=True, exist_ok=True)
        (self.storage / "refs" / "main").write_text(self.commit)  # no newline, as the Hub writes it
        (self.storage / "blobs").mkdir(exist_ok=True)
        for path, data in self.files.items():
            self.blob(path).write_bytes(data)
            link = self.snapshot / path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(self.blob(path), link.parent))
        if with_tree_cache:
            (self.storage / "trees").mkdir(exist_ok=True)
            (self.storage / "trees" / f"{self.commit}.json").write_bytes(self.tree_cache())
        return self
