"""Conversion to safetensors: approved checkpoints only, lossless, proven, atomic."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from weightguard.cli.convert import run_conversion  # noqa: E402
from weightguard.convert import writer  # noqa: E402
from weightguard.errors import ConversionError  # noqa: E402
from weightguard.policy.load import load_builtin, load_policy  # noqa: E402


def convert(src: Path, out: Path, loaded=None, **kw):
    # Exactly what `weightguard convert` runs: resolve, detect formats, convert through the real scanner.
    return run_conversion(str(src), out, loaded or load_builtin("default"), **kw)


def digest_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_tied_embeddings_are_stored_once_with_the_alias_recorded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    emb = torch.randn(50, 8)
    src = tmp_path / "src"
    src.mkdir()
    torch.save(
        {"transformer.wte.weight": emb, "lm_head.weight": emb, "ln.bias": torch.zeros(8)}, src / "pytorch_model.bin"
    )
    result = convert(src, tmp_path / "out")
    assert result.converted
    [proof] = result.proof.files
    assert proof.aliases == {"lm_head.weight": "transformer.wte.weight"}
    loaded = load_file(tmp_path / "out" / "model.safetensors")
    assert set(loaded) == {"transformer.wte.weight", "ln.bias"}
    assert torch.equal(loaded["transformer.wte.weight"], emb)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "lm_head.weight": "transformer.wte.weight"}


def test_views_that_do_not_cover_their_storage_become_contiguous_copies(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"rows": base[1:3], "cols": base[:, 2], "t": base.t()}, src / "weights.pt")
    result = convert(src, tmp_path / "out")
    assert result.converted, result.findings
    back = load_file(tmp_path / "out" / "weights.safetensors")
    assert (
        torch.equal(back["rows"], base[1:3])
        and torch.equal(back["cols"], base[:, 2])
        and torch.equal(back["t"], base.t())
    )


DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
]


def test_every_storable_dtype_round_trips_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(1)
    state = {}
    for dtype in DTYPES:
        raw = torch.randn(3, 5) * 10
        state[str(dtype)] = raw.to(dtype) if dtype is not torch.bool else raw > 0
    state["scalar"] = torch.tensor(3.5)
    state["empty"] = torch.zeros(0, 4)
    src = tmp_path / "src"
    src.mkdir()
    torch.save(state, src / "pytorch_model.bin")
    result = convert(src, tmp_path / "out")
    assert result.converted, result.findings
    back = load_file(tmp_path / "out" / "model.safetensors")
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), name
    assert result.proof.files[0].compared == len(state)


def test_a_sharded_checkpoint_keeps_its_structure_and_renames_the_weight_map(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"a": torch.ones(2)}, src / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(3)}, src / "pytorch_model-00002-of-00002.bin")
    index = {
        "metadata": {"total_size": 20},
        "weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"},
    }
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    result = convert(src, tmp_path / "out")
    assert result.converted
    out_index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert out_index == {
        "metadata": {"total_size": 20},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    assert load_file(tmp_path / "out" / "model-00002-of-00002.safetensors")["b"].shape == (3,)


def test_the_legacy_format_converts(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"w": torch.arange(6.0)}, src / "model.pt", _use_new_zipfile_serialization=False)
    result = convert(src, tmp_path / "out")
    assert result.converted, result.findings
    assert torch.equal(load_file(tmp_path / "out" / "model.safetensors")["w"], torch.arange(6.0))


def test_a_state_dict_wrapper_is_converted_and_the_training_state_beside_it_left_out(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 7, "optimizer_step": 100}, src / "ckpt.pt")
    result = convert(src, tmp_path / "out")
    assert result.converted, result.findings
    [converted] = result.proof.files
    assert converted.unwrapped == "state_dict" and converted.left_out == ["epoch", "optimizer_step"]
    assert converted.dropped == []
    [note] = [f for f in result.findings if f.code == "WG-CNV-006"]
    assert "left out, not converted: epoch, optimizer_step" in note.message


def test_non_tensor_entries_inside_the_weights_are_still_refused_unless_allowed(tmp_path: Path, write_policy) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"state_dict": {"w": torch.ones(2), "version": 3}, "epoch": 7}, src / "ckpt.pt")
    refused = convert(src, tmp_path / "out1")
    assert not refused.converted
    assert [f.code for f in refused.findings] == ["WG-CNV-002"]
    assert "version" in refused.findings[0].message
    assert digest_tree(tmp_path / "out1") == {}
    allowed = load_policy(write_policy("conversion:\n  allow_dropping_non_tensor: true"))
    ok = convert(src, tmp_path / "out2", allowed)
    assert ok.converted
    assert ok.proof.files[0].dropped == ["version"] and ok.proof.files[0].left_out == ["epoch"]


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_without_being_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"w": torch.ones(2), "x": _Payload(marker)}, src / "pytorch_model.bin", pickle_module=pickle)
    result = convert(src, tmp_path / "out")
    assert not result.converted
    summary, *blocking = result.findings
    assert summary.code == "WG-CNV-001"
    assert blocking and all(f.code in summary.message for f in blocking)  # the refusal names the findings
    assert "os" in summary.message and "system" in summary.message
    assert not marker.exists()
    assert digest_tree(tmp_path / "out") == {}


def test_an_interrupted_conversion_leaves_nothing_and_never_touches_the_source(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"a": torch.ones(1000)}, src / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.ones(1000)}, src / "pytorch_model-00002-of-00002.bin")
    (src / "config.json").write_text("{}")
    before = digest_tree(src)
    calls = {"n": 0}
    real = writer._as_bytes

    def dying(t):  # the process "dies" while writing the second shard
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(t)

    # justified patch: the only way to interrupt a write at an exact point inside the real writer
    monkeypatch.setattr(writer, "_as_bytes", dying)
    with pytest.raises(KeyboardInterrupt):
        convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no staging folder left either
    assert digest_tree(src) == before


def test_an_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"a": torch.ones(2)}, src / "pytorch_model.bin")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("keep me")
    with pytest.raises(ConversionError, match="already holds"):
        convert(src, out)
    assert (out / "model.safetensors").read_text() == "keep me"


def test_numpy_npz_archives_convert(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "arrays.npz", w=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.ones(2, dtype=np.int64))
    result = convert(src, tmp_path / "out")
    assert result.converted, result.findings
    back = load_file(tmp_path / "out" / "arrays.safetensors")
    assert back["w"].tolist() == [[0, 1, 2], [3, 4, 5]] and back["b"].dtype == torch.int64


def test_signed_output_verifies_as_an_oms_signature(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "k.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"a": torch.ones(2)}, src / "pytorch_model.bin")
    result = convert(src, tmp_path / "out", sign_key=tmp_path / "k.pem")
    assert result.proof.signature is not None
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "weightguard",
            "verify-signature",
            str(tmp_path / "out"),
            "--signature",
            result.proof.signature,
            "--public-key",
            str(tmp_path / "k.pub"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_tiny_transformers_model_loads_from_the_converted_output(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    src = tmp_path / "src"
    # the pickle-era layout: config.json + pytorch_model.bin holding the state dict (lm_head tied to wte)
    config.save_pretrained(src)
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    result = convert(src, tmp_path / "out")
    assert result.converted, result.findings
    again = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path / "out", use_safetensors=True, local_files_only=True
    ).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
