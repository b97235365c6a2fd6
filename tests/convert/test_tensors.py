"""Picking tensors out of a loaded checkpoint: dtypes, wrappers, what cannot be stored."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import safetensors.torch as st  # noqa: E402

from weightguard.convert.proof import prove  # noqa: E402
from weightguard.convert.tensors import DTYPES, extract  # noqa: E402
from weightguard.convert.writer import write_safetensors  # noqa: E402
from weightguard.errors import ConversionError  # noqa: E402


def _sample(dtype: torch.dtype) -> torch.Tensor:
    raw = torch.randint(0, 256, (2, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    if dtype.itemsize == 1:
        return raw.view(dtype) if dtype is not torch.bool else raw > 127
    return raw.view(torch.uint8).reshape(2, -1).view(dtype)  # any bit pattern, NaNs included


def test_every_dtype_the_safetensors_torch_binding_knows_is_supported() -> None:
    # _TYPES is safetensors' own dtype table: a conformance check against the library that reads our files.
    known = set(st._TYPES.values())
    assert known <= set(DTYPES)


@pytest.mark.parametrize("dtype", sorted(DTYPES, key=str), ids=str)
def test_each_dtype_round_trips_bit_for_bit_through_the_writer(dtype: torch.dtype, tmp_path: Path) -> None:
    tensor = _sample(dtype)
    out = tmp_path / "t.safetensors"
    write_safetensors(out, {"t": tensor}, {"format": "pt"})
    assert prove(out, {"t": tensor}, {}) == 1
    assert st.load_file(out)["t"].dtype == dtype


def test_a_state_dict_wrapper_is_unwrapped_and_its_siblings_listed() -> None:
    ex = extract({"state_dict": {"w": torch.ones(1)}, "epoch": 3}, unwrap_state_dict=True)
    assert ex.unwrapped == "state_dict" and set(ex.tensors) == {"w"}
    assert ex.left_out == ["epoch"] and ex.dropped == []  # training state is left out, not dropped


def test_nested_non_tensor_values_are_listed_as_dropped() -> None:
    ex = extract({"w": torch.ones(1), "cfg": {"a": 1}, "s": "x"}, unwrap_state_dict=True)
    assert sorted(ex.dropped) == ["cfg", "s"] and set(ex.source) == {"w"}


def test_a_top_level_that_is_not_a_dict_is_refused() -> None:
    with pytest.raises(ConversionError, match="not a dict of tensors"):
        extract([torch.ones(1)], unwrap_state_dict=True)


def test_a_sparse_tensor_is_refused_rather_than_densified() -> None:
    sparse = torch.sparse_coo_tensor(torch.tensor([[0]]), torch.tensor([1.0]), (3,), check_invariants=True)
    with pytest.raises(ConversionError, match="cannot be stored"):
        extract({"s": sparse}, unwrap_state_dict=True)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")  # deprecated upstream; still loadable from old files
def test_a_quantized_tensor_is_refused() -> None:
    q = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)
    with pytest.raises(ConversionError, match="cannot be stored"):
        extract({"q": q}, unwrap_state_dict=True)
