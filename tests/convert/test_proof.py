"""The proof compares every source name with the reloaded output, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

from weightguard.convert.proof import identical, prove  # noqa: E402
from weightguard.convert.writer import write_safetensors  # noqa: E402
from weightguard.errors import ConversionError  # noqa: E402


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(6, 4, generator=g)
    return {"wte": emb, "lm_head": emb, "b": torch.randn(4, generator=g).to(torch.bfloat16)}


def test_every_source_name_is_compared_including_removed_aliases(tmp_path: Path) -> None:
    state = _state()
    out = tmp_path / "m.safetensors"
    write_safetensors(out, {"wte": state["wte"], "b": state["b"]}, {"format": "pt", "lm_head": "wte"})
    assert prove(out, state, {"lm_head": "wte"}) == 3


def test_reopening_after_every_tensor_gives_the_same_answer(tmp_path: Path) -> None:
    state = _state()
    out = tmp_path / "m.safetensors"
    write_safetensors(out, {"wte": state["wte"], "b": state["b"]}, {"format": "pt", "lm_head": "wte"})
    assert prove(out, state, {"lm_head": "wte"}, batch_bytes=1) == 3


def test_a_file_that_does_not_record_a_removed_alias_fails_the_proof(tmp_path: Path) -> None:
    state = _state()
    out = tmp_path / "m.safetensors"
    write_safetensors(out, {"wte": state["wte"], "b": state["b"]}, {"format": "pt"})
    with pytest.raises(ConversionError, match="aliases recorded"):
        prove(out, state, {"lm_head": "wte"})


def test_a_flipped_byte_in_the_output_fails_the_proof(tmp_path: Path) -> None:
    state = {"w": torch.arange(8, dtype=torch.float32)}
    out = tmp_path / "m.safetensors"
    write_safetensors(out, state, {"format": "pt"})
    data = bytearray(out.read_bytes())
    data[-1] ^= 0x01
    out.write_bytes(bytes(data))
    with pytest.raises(ConversionError, match="bit for bit"):
        prove(out, state, {})


def test_negative_zero_written_as_zero_fails_the_proof(tmp_path: Path) -> None:
    # torch.equal(-0.0, 0.0) is True; the proof compares bytes, so the sign bit counts.
    out = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(2)}, out)
    with pytest.raises(ConversionError):
        prove(out, {"w": torch.tensor([-0.0, 0.0])}, {})
    assert not identical(torch.tensor([-0.0]), torch.tensor([0.0]))


def test_a_missing_or_extra_name_fails_the_proof(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    save_file({"a": torch.ones(1), "extra": torch.ones(1)}, out)
    with pytest.raises(ConversionError, match="names differ"):
        prove(out, {"a": torch.ones(1), "b": torch.ones(1)}, {})


def test_a_file_that_is_not_safetensors_fails_the_proof(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"\xff" * 64)
    with pytest.raises(ConversionError, match="cannot be reloaded"):
        prove(out, {"a": torch.ones(1)}, {})
