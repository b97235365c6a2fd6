"""LocalOciLayoutFetcher against OCI image layouts built in the test: safe, bounded, digest-checked unpacking."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from sidecar_support import build_oci_layout, tar_layer

from weightguard.sidecar.fetch import ArtifactRef, FetchError, FetchLimits, LocalOciLayoutFetcher


def ref(repository: str, digest: str) -> ArtifactRef:
    return ArtifactRef("https://harbor.local", repository, digest, authorization="Bearer x")


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_layers_are_unpacked_in_order_with_whiteouts_applied(tmp_path: Path) -> None:
    base = tar_layer([("models/a.bin", b"A"), ("models/old.bin", b"O"), ("etc/conf", b"c")])
    top = tar_layer([("models/b.bin", b"B"), ("models/.wh.old.bin", b""), ("etc/.wh..wh..opq", b"")], gzipped=False)
    digest = build_oci_layout(tmp_path, "team/model", [base, ("application/vnd.oci.image.layer.v1.tar", top)])
    dest = tmp_path / "out"
    fetched = LocalOciLayoutFetcher(tmp_path).fetch(ref("team/model", digest), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "models/a.bin",
        "models/b.bin",
    ]
    assert fetched.layers == 2 and fetched.files == 4 and fetched.manifest_digest == digest


def test_modelpack_raw_weight_layers_are_written_to_their_annotated_path(tmp_path: Path) -> None:
    digest = build_oci_layout(tmp_path, "r", [tar_layer([("README", b"r")])])
    manifest_path = tmp_path / "r" / "blobs" / "sha256" / digest.removeprefix("sha256:")
    manifest = json.loads(manifest_path.read_bytes())
    weights = b"\x00" * 64
    blob = hashlib.sha256(weights).hexdigest()
    (tmp_path / "r" / "blobs" / "sha256" / blob).write_bytes(weights)
    manifest["layers"].append(
        {
            "mediaType": "application/vnd.cncf.model.weight.v1.raw",
            "digest": f"sha256:{blob}",
            "size": 64,
            "annotations": {"org.cncf.model.filepath": "model/weights.bin"},
        }
    )
    data = json.dumps(manifest).encode()
    new = hashlib.sha256(data).hexdigest()
    (tmp_path / "r" / "blobs" / "sha256" / new).write_bytes(data)
    LocalOciLayoutFetcher(tmp_path).fetch(ref("r", f"sha256:{new}"), tmp_path / "out")
    assert (tmp_path / "out" / "model" / "weights.bin").read_bytes() == weights


def test_links_and_devices_are_skipped_and_listed(tmp_path: Path) -> None:
    layer = tar_layer([("m/w.bin", b"w"), link("m/evil", "/etc/passwd"), link("m/hard", "m/w.bin", tarfile.LNKTYPE)])
    digest = build_oci_layout(tmp_path, "r", [layer])
    fetched = LocalOciLayoutFetcher(tmp_path).fetch(ref("r", digest), tmp_path / "out")
    assert set(fetched.skipped) == {"m/evil", "m/hard"}
    assert not (tmp_path / "out" / "m" / "evil").exists()


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "a\\..\\b"])
def test_member_names_that_climb_out_stop_the_fetch(tmp_path: Path, name: str) -> None:
    digest = build_oci_layout(tmp_path, "r", [tar_layer([(name, b"x")])])
    with pytest.raises(FetchError, match="unsafe member"):
        LocalOciLayoutFetcher(tmp_path).fetch(ref("r", digest), tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_tampered_blob_fails_the_digest_check(tmp_path: Path) -> None:
    digest = build_oci_layout(tmp_path, "r", [tar_layer([("m", b"x" * 100)])])
    manifest = (tmp_path / "r" / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    layer_digest = json.loads(manifest)["layers"][0]["digest"].removeprefix("sha256:")
    blob = tmp_path / "r" / "blobs" / "sha256" / layer_digest
    blob.write_bytes(tar_layer([("m", b"y" * 100)]))
    with pytest.raises(FetchError, match="does not match its digest"):
        LocalOciLayoutFetcher(tmp_path).fetch(ref("r", digest), tmp_path / "out")


def test_limits_on_bytes_and_members_are_enforced(tmp_path: Path) -> None:
    digest = build_oci_layout(tmp_path, "r", [tar_layer([(f"f{i}", b"z" * 1000) for i in range(5)])])
    with pytest.raises(FetchError, match="more than 4000 bytes"):
        LocalOciLayoutFetcher(tmp_path, FetchLimits(max_bytes=4000)).fetch(ref("r", digest), tmp_path / "o1")
    with pytest.raises(FetchError, match="more than 3 layer members"):
        LocalOciLayoutFetcher(tmp_path, FetchLimits(max_members=3)).fetch(ref("r", digest), tmp_path / "o2")


def test_unknown_layer_types_fail_closed(tmp_path: Path) -> None:
    digest = build_oci_layout(tmp_path, "r", [b"lz4-bytes"], media_type="application/vnd.oci.image.layer.v1.tar+lz4")
    with pytest.raises(FetchError, match="cannot unpack"):
        LocalOciLayoutFetcher(tmp_path).fetch(ref("r", digest), tmp_path / "out")


ZSTD_WEIGHTS = "application/vnd.cncf.model.weight.v1.tar+zstd"


def test_zstd_layers_are_unpacked_like_gzip_ones(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard", reason="the 'zstd' extra (zstandard) is part of the test install")
    layer = zstandard.ZstdCompressor().compress(tar_layer([("models/w.bin", b"W" * 5000)], gzipped=False))
    digest = build_oci_layout(tmp_path, "r", [(ZSTD_WEIGHTS, layer)])
    dest = tmp_path / "out"
    LocalOciLayoutFetcher(tmp_path).fetch(ref("r", digest), dest)
    assert (dest / "models/w.bin").read_bytes() == b"W" * 5000


def test_zstd_layers_that_are_corrupt_or_ask_for_a_huge_window_are_refused(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard", reason="the 'zstd' extra (zstandard) is part of the test install")
    corrupt = build_oci_layout(tmp_path, "r", [(ZSTD_WEIGHTS, b"\x28\xb5\x2f\xfd" + b"\xff" * 64)])
    with pytest.raises(FetchError, match="not a readable"):
        LocalOciLayoutFetcher(tmp_path).fetch(ref("r", corrupt), tmp_path / "o1")
    # A frame whose window is 2 GiB: the decoder would have to reserve that much memory.
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=False)
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()  # size unknown: the window stays
    huge = stream.compress(tar_layer([("m", b"x")], gzipped=False)) + stream.flush()
    digest = build_oci_layout(tmp_path, "r", [(ZSTD_WEIGHTS, huge)])
    with pytest.raises(FetchError, match="not a readable"):
        LocalOciLayoutFetcher(tmp_path).fetch(ref("r", digest), tmp_path / "o2")
    assert not any((tmp_path / "o2").rglob("*"))  # nothing written from a refused layer


@pytest.mark.parametrize(
    ("repository", "digest"), [("../etc", "sha256:" + "0" * 64), ("r", "sha512:abc"), ("missing", "sha256:" + "0" * 64)]
)
def test_bad_references_are_fetch_errors(tmp_path: Path, repository: str, digest: str) -> None:
    build_oci_layout(tmp_path, "r", [tar_layer([("m", b"x")])])
    with pytest.raises(FetchError):
        LocalOciLayoutFetcher(tmp_path).fetch(ref(repository, digest), tmp_path / "out")
