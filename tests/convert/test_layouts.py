"""Choosing the weights entry of a checkpoint: pure dict walking, no torch needed."""

from __future__ import annotations

import pytest

from weightguard.convert.layouts import WeightsNotFoundError, select_weights


class T:
    """Stands for a tensor: the caller tells ``select_weights`` what a tensor is."""


def _is_t(value: object) -> bool:
    return isinstance(value, T)


def _select(obj: dict, keys: tuple[str, ...] = (), recognise: bool = True):
    return select_weights(obj, keys=keys, recognise_layouts=recognise, is_tensor=_is_t)


def test_a_plain_state_dict_is_taken_whole() -> None:
    obj = {"w": T(), "b": T()}
    chosen = _select(obj)
    assert (chosen.weights, chosen.path, chosen.left_out, chosen.layout) == (obj, None, (), "plain")


def test_a_key_containing_dots_literally_wins_over_the_nested_reading() -> None:
    literal, nested = {"w": T()}, {"w": T()}
    chosen = _select({"model.state_dict": literal, "model": {"state_dict": nested}}, ("model.state_dict",))
    assert chosen.weights is literal and chosen.left_out == ("model",)


def test_named_keys_are_tried_in_order_and_a_file_holding_none_falls_back_to_its_layout() -> None:
    obj = {"state_dict": {"w": T()}, "epoch": 1}
    chosen = _select(obj, ("ema", "generator"))
    assert chosen.path == "state_dict" and chosen.left_out == ("epoch",)


def test_a_named_key_that_leads_to_a_non_dict_is_not_taken() -> None:
    chosen = _select({"model": {"w": T()}, "epoch": 3}, ("epoch", "model"))
    assert chosen.path == "model" and chosen.layout == "key"


def test_training_state_holding_tensors_does_not_make_the_choice_ambiguous() -> None:
    obj = {"module": {"w": T()}, "optimizer": {"exp_avg": T()}, "ds_version": "0.16"}
    chosen = _select(obj)
    assert (chosen.path, chosen.layout) == ("module", "deepspeed")


def test_a_checkpoint_without_weights_is_refused_with_a_hint_to_name_them() -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        _select({"epoch": 3, "config": {"lr": 0.1}})
    assert "no entry holds the weights" in info.value.message
    assert info.value.hint is not None and "--key PATH" in info.value.hint


def test_the_hint_never_suggests_the_optimizer_state() -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        _select({"net": {"params": {"w": T()}}, "optimizer": {"state": {"m": T()}}})
    assert info.value.candidates == ("net.params",)
