"""Shared and tied tensors: one complete name kept per storage, other views never lost."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from weightguard.convert.shared import covers_storage, dedupe_shared  # noqa: E402


def test_a_gpt2_style_tied_head_is_removed_in_favour_of_the_embedding() -> None:
    wte = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    kept, aliases = dedupe_shared({"lm_head.weight": wte, "transformer.wte.weight": wte})
    assert aliases == {"lm_head.weight": "transformer.wte.weight"}
    assert list(kept) == ["transformer.wte.weight"]


def test_identical_views_without_a_preferred_name_keep_the_first_name_in_order() -> None:
    w = torch.ones(3)
    kept, aliases = dedupe_shared({"b.weight": w, "a.weight": w})
    assert aliases == {"b.weight": "a.weight"} and set(kept) == {"a.weight"}


def test_a_slice_of_a_storage_someone_covers_is_kept_under_its_own_name() -> None:
    base = torch.arange(12.0).reshape(3, 4)
    kept, aliases = dedupe_shared({"full": base, "row": base[1], "t": base.t()})
    assert aliases == {}
    assert set(kept) == {"full", "row", "t"}
    assert not covers_storage(kept["row"]) and covers_storage(kept["full"])


def test_views_of_a_storage_nobody_covers_are_all_kept() -> None:
    base = torch.arange(10.0)
    kept, aliases = dedupe_shared({"head": base[:4], "tail": base[4:]})
    assert aliases == {} and set(kept) == {"head", "tail"}


def test_a_view_with_another_dtype_is_not_an_alias() -> None:
    base = torch.arange(4, dtype=torch.float32)
    kept, aliases = dedupe_shared({"f": base, "i": base.view(torch.int32)})
    assert aliases == {} and set(kept) == {"f", "i"}


def test_empty_tensors_are_never_grouped_as_shared() -> None:
    kept, aliases = dedupe_shared({"a": torch.zeros(0), "b": torch.zeros(0, 3)})
    assert aliases == {} and set(kept) == {"a", "b"}
