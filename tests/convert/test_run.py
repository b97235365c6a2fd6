"""The conversion run: approval before loading, proof over every name, manifest, nothing partial."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors import safe_open  # noqa: E402

from weightguard.api import make_scanner, scan  # noqa: E402
from weightguard.convert import publish, run  # noqa: E402
from weightguard.convert.planner import formats_of  # noqa: E402
from weightguard.convert.run import PROOF_NAME, convert_model  # noqa: E402
from weightguard.errors import ConversionError, WeightguardError  # noqa: E402
from weightguard.findings import Finding, Severity  # noqa: E402
from weightguard.limits import Limits  # noqa: E402
from weightguard.policy.load import LoadedPolicy, load_builtin, load_policy  # noqa: E402
from weightguard.scan_codes import RULES as SCAN_RULES  # noqa: E402
from weightguard.sources.interface import ByteSource  # noqa: E402
from weightguard.sources.local import LocalSource  # noqa: E402


@dataclass
class RecordingApprover:
    """A fake of the Approver seam: records the bytes it is shown and answers with ``verdict``."""

    verdict: tuple[Finding, ...] = ()
    seen: dict[str, bytes] = field(default_factory=dict)

    def approve(self, source: ByteSource, relpath: str) -> tuple[Finding, ...]:
        self.seen[relpath] = source.read_at(0, source.size)
        return self.verdict


def _convert(src: Path, out: Path, approver: RecordingApprover | None = None, loaded: LoadedPolicy | None = None):
    loaded = loaded or load_builtin("default")
    files = list(LocalSource(src).collect().files)
    return convert_model(files, formats_of(files, Limits()), out, loaded, make_scanner(loaded), approver=approver)


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _gpt2_like(src: Path) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    wte = torch.randn(32, 8, generator=g)
    qkv = torch.randn(8, 24, generator=g)
    state = {
        "transformer.wte.weight": wte,
        "lm_head.weight": wte,  # tied, as GPT-2 saves it
        "attn.c_attn.weight": qkv,
        "attn.q_view": qkv[:, :8],  # a view into another tensor's storage
        "attn.k_t": qkv[:, 8:16].t(),  # a non-contiguous view
        "ln.scale": torch.ones(8, dtype=torch.bfloat16),
    }
    src.mkdir()
    torch.save(state, src / "pytorch_model.bin")
    (src / "config.json").write_text('{"model_type": "gpt2"}')
    return state


def test_the_approver_sees_exactly_the_bytes_of_the_source_file(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    approver = RecordingApprover()
    result = _convert(tmp_path / "src", tmp_path / "out", approver)
    assert result.converted, result.findings
    # The weights before they are loaded, and every file copied as is (from its staged copy).
    assert approver.seen == {
        "pytorch_model.bin": (tmp_path / "src" / "pytorch_model.bin").read_bytes(),
        "config.json": (tmp_path / "src" / "config.json").read_bytes(),
    }


def test_a_blocked_file_is_refused_by_name_and_nothing_is_written(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    blocker = SCAN_RULES[0].at("pytorch_model.bin", "invented blocking finding")
    result = _convert(tmp_path / "src", tmp_path / "out", RecordingApprover(verdict=(blocker,)))
    assert not result.converted
    assert [f.code for f in result.findings] == ["WG-CNV-001", blocker.code]
    assert "invented blocking finding" in result.findings[0].message
    assert not (tmp_path / "out").exists()


def test_the_proof_covers_every_source_name_and_the_manifest_matches_the_disk(tmp_path: Path) -> None:
    state = _gpt2_like(tmp_path / "src")
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert result.converted, result.findings
    [converted] = result.proof.files
    assert converted.compared == len(state)  # aliases included
    assert converted.aliases == {"lm_head.weight": "transformer.wte.weight"}
    assert converted.tensors == len(state) - 1
    assert converted.source_sha256 == hashlib.sha256((tmp_path / "src" / "pytorch_model.bin").read_bytes()).hexdigest()
    on_disk = _tree(tmp_path / "out")
    written = json.loads((tmp_path / "out" / PROOF_NAME).read_text())
    assert written["manifest"] == {k: v for k, v in on_disk.items() if k != PROOF_NAME}
    assert converted.output_sha256 == on_disk["model.safetensors"]
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "lm_head.weight": "transformer.wte.weight"}
        assert torch.equal(f.get_tensor("attn.k_t"), state["attn.k_t"])


def test_weightguard_s_own_scan_approves_the_converted_output(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    assert _convert(tmp_path / "src", tmp_path / "out").converted
    report = scan([tmp_path / "out"], load_builtin("default"))
    assert report.verdict == "approved", [(f.code, f.message) for f in report.findings]


def test_top_level_non_tensor_entries_are_refused_by_default_and_listed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"w": torch.ones(2), "step": 5, "config": {"lr": 0.1}, "name": "run-1"}, src / "ckpt.pt")
    result = _convert(src, tmp_path / "out")
    assert not result.converted
    [finding] = result.findings
    assert finding.code == "WG-CNV-002" and finding.severity is Severity.MEDIUM
    assert all(k in finding.message for k in ("step", "config", "name"))
    assert not (tmp_path / "out").exists()


def test_dropping_allowed_by_policy_is_recorded_not_silent(
    tmp_path: Path, write_policy, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"w": torch.ones(2), "step": 5}, src / "ckpt.pt")
    loaded = load_policy(write_policy("conversion:\n  allow_dropping_non_tensor: true"))
    with caplog.at_level(logging.WARNING, logger="weightguard.convert.run"):
        result = _convert(src, tmp_path / "out", loaded=loaded)
    assert any("allow_dropping_non_tensor" in r.getMessage() and "step" in r.getMessage() for r in caplog.records)
    assert result.converted
    assert result.proof.files[0].dropped == ["step"]
    assert any(f.code == "WG-CNV-002" and "step" in f.message for f in result.findings)


def test_a_wrapper_is_not_unwrapped_when_the_policy_says_so(tmp_path: Path, write_policy) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"state_dict": {"w": torch.ones(2)}}, src / "ckpt.pt")
    loaded = load_policy(write_policy("conversion:\n  unwrap_state_dict: false"))
    result = _convert(src, tmp_path / "out", loaded=loaded)
    assert not result.converted
    assert [f.code for f in result.findings] == ["WG-CNV-002"]


def test_a_failed_proof_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _gpt2_like(tmp_path / "src")
    before = _tree(tmp_path / "src")

    def failing_proof(*_args: object, **_kw: object) -> int:
        raise ConversionError("model.safetensors: tensor 'x' did not survive the round trip bit for bit")

    # justified patch: a correct writer never produces an output that fails its proof, so the
    # failure has to be injected at the proof seam to test what happens to the staged files.
    monkeypatch.setattr(run, "prove", failing_proof)
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert not result.converted
    assert [f.code for f in result.findings] == ["WG-CNV-005"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no staging folder
    assert _tree(tmp_path / "src") == before


def test_an_empty_output_directory_is_published_whole_with_the_usual_mode(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    (tmp_path / "out").mkdir()
    umask = os.umask(0o022)
    try:
        assert _convert(tmp_path / "src", tmp_path / "out").converted
    finally:
        os.umask(umask)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors", PROOF_NAME]
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()} == {0o644}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_a_directory_holding_other_files_gets_each_file_and_keeps_its_own(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "README.md").write_text("mine")
    assert _convert(tmp_path / "src", tmp_path / "out").converted
    assert (tmp_path / "out" / "README.md").read_text() == "mine"
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "README.md",
        "config.json",
        "model.safetensors",
        PROOF_NAME,
    }


def test_a_second_conversion_into_the_same_directory_is_refused(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    assert _convert(tmp_path / "src", tmp_path / "out").converted
    before = _tree(tmp_path / "out")
    with pytest.raises(ConversionError, match="already holds"):
        _convert(tmp_path / "src", tmp_path / "out")
    assert _tree(tmp_path / "out") == before


def test_a_signing_failure_publishes_nothing(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(WeightguardError):
        _convert_signed(tmp_path / "src", tmp_path / "out", tmp_path / "bad.pem")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pem", "src"]


def _convert_signed(src: Path, out: Path, key: Path):
    loaded = load_builtin("default")
    files = list(LocalSource(src).collect().files)
    return convert_model(files, formats_of(files, Limits()), out, loaded, make_scanner(loaded), sign_key=key)


def test_a_raw_pickle_beside_the_weights_refuses_the_conversion(tmp_path: Path) -> None:
    _gpt2_like(tmp_path / "src")
    (tmp_path / "src" / "training_args.bin").write_bytes(pickle.dumps({"lr": 0.1, "steps": [1, 2]}, protocol=4))
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert not result.converted
    assert [(f.code, f.path) for f in result.findings] == [("WG-CNV-007", "training_args.bin")]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["extra.npy", "optimizer.pkl.gz"])
def test_a_pickle_hiding_in_a_file_that_is_copied_refuses_the_conversion(tmp_path: Path, name: str) -> None:
    import gzip
    import io

    import numpy as np

    _gpt2_like(tmp_path / "src")
    if name.endswith(".npy"):
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)  # writes a pickle; never loaded
        payload = buffer.getvalue()
    else:
        # builtins.exec as a protocol 2 pickle, gzipped: the first format detected is gzip.
        code = b"print(1)"
        payload = gzip.compress(b"\x80\x02cbuiltins\nexec\nX" + len(code).to_bytes(4, "little") + code + b"\x85R.")
    (tmp_path / "src" / name).write_bytes(payload)
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert not result.converted
    [refusal] = [f for f in result.findings if f.code == "WG-CNV-001"]
    assert refusal.path == name and "not copied into the output" in refusal.message
    assert not (tmp_path / "out").exists()


def test_signing_into_a_folder_that_already_holds_files_is_refused_before_any_work(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _gpt2_like(tmp_path / "src")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "foreign.pkl").write_bytes(b"never checked by this run")
    with pytest.raises(ConversionError, match="already holds files"):
        _convert_signed(tmp_path / "src", tmp_path / "out", tmp_path / "key.pem")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["foreign.pkl"]


def _model_and_a_full_output_folder(tmp_path: Path) -> None:
    """A model in src/ and an output folder that already holds a file of the user's."""
    _gpt2_like(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "README.md").write_text("mine")


def _no_hard_links(*_: object, **__: object) -> None:
    raise OSError(errno.EPERM, "Operation not permitted")  # as link(2) answers on file systems without them


def test_a_file_that_appears_while_converting_into_a_full_directory_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _model_and_a_full_output_folder(tmp_path)
    real = run.publish_files

    def someone_writes_first(staging: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_text("theirs")  # after the clash check, before publishing
        real(staging, out_dir)

    monkeypatch.setattr(run, "publish_files", someone_writes_first)
    with pytest.raises(ConversionError, match="appeared while the conversion ran"):
        _convert(tmp_path / "src", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_text() == "theirs"
    # Whatever this conversion placed before the clash is gone again; no staging folder is left.
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"README.md", "model.safetensors"}


def test_files_are_placed_whole_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _model_and_a_full_output_folder(tmp_path)
    monkeypatch.setattr(publish.os, "link", _no_hard_links)
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert result.converted
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "README.md",
        "config.json",
        "model.safetensors",
        PROOF_NAME,
    }
    manifest = result.proof.manifest
    for name, digest in manifest.items():
        assert hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest() == digest


def test_a_failed_rename_without_hard_links_leaves_no_claim_and_removes_what_was_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    out.mkdir()
    (out / "README.md").write_text("mine")
    (staging / "a.bin").write_bytes(b"a")
    (staging / "b.bin").write_bytes(b"b")
    real_replace = Path.replace

    def replace(self: Path, target: Path) -> Path:
        if self.name == "b.bin":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(self, target)

    monkeypatch.setattr(publish.os, "link", _no_hard_links)
    monkeypatch.setattr(Path, "replace", replace)
    with pytest.raises(ConversionError, match="cannot publish"):
        publish.publish_files(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
