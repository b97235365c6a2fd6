"""Planning: which files become safetensors, under which names."""

from __future__ import annotations

import json

import pytest

from weightguard.convert.planner import output_name, plan, rename_index
from weightguard.errors import ConversionError
from weightguard.formats.interface import FileFormat


@pytest.mark.parametrize(
    ("source", "output"),
    [
        ("pytorch_model.bin", "model.safetensors"),
        ("pytorch_model-00001-of-00003.bin", "model-00001-of-00003.safetensors"),
        ("sub/weights.pt", "sub/weights.safetensors"),
        ("arrays.npz", "arrays.safetensors"),
    ],
)
def test_output_names_follow_hugging_face_s_converter(source: str, output: str) -> None:
    assert output_name(source) == output


def test_weights_are_converted_the_index_renamed_and_everything_else_copied() -> None:
    conversion = plan(
        {
            "pytorch_model-00001-of-00002.bin": FileFormat.PYTORCH_ZIP,
            "pytorch_model-00002-of-00002.bin": FileFormat.PYTORCH_LEGACY,
            "pytorch_model.bin.index.json": FileFormat.JSON,
            "x.npz": FileFormat.NUMPY_NPZ,
            "config.json": FileFormat.JSON,
            "tokenizer.model": FileFormat.UNKNOWN,
        }
    )
    assert [(w.source, w.kind) for w in conversion.weights] == [
        ("pytorch_model-00001-of-00002.bin", "torch"),
        ("pytorch_model-00002-of-00002.bin", "torch"),
        ("x.npz", "npz"),
    ]
    assert conversion.index == ("pytorch_model.bin.index.json", "model.safetensors.index.json")
    assert conversion.copies == ("config.json", "tokenizer.model")


def test_two_weights_with_one_output_name_are_refused() -> None:
    with pytest.raises(ConversionError, match="twice"):
        plan({"w.pt": FileFormat.PYTORCH_ZIP, "w.bin": FileFormat.PYTORCH_LEGACY})


def test_a_weight_whose_output_name_is_already_a_copied_file_is_refused() -> None:
    with pytest.raises(ConversionError, match="twice"):
        plan({"w.pt": FileFormat.PYTORCH_ZIP, "w.safetensors": FileFormat.SAFETENSORS})


def test_the_index_keeps_its_structure_and_only_renames_known_shards() -> None:
    index = {"metadata": {"total_size": 8}, "weight_map": {"a": "pytorch_model-1.bin", "b": "other.bin"}}
    out = json.loads(rename_index(json.dumps(index).encode(), {"pytorch_model-1.bin": "model-1.safetensors"}))
    assert out == {"metadata": {"total_size": 8}, "weight_map": {"a": "model-1.safetensors", "b": "other.bin"}}


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"weight_map": []}', b"{}"])
def test_a_malformed_index_is_a_conversion_error_not_a_crash(data: bytes) -> None:
    with pytest.raises(ConversionError, match="unreadable checkpoint index"):
        rename_index(data, {})


def test_pickle_joblib_and_torchscript_files_are_neither_converted_nor_copied() -> None:
    conversion = plan(
        {
            "a.pkl": FileFormat.PICKLE,
            "b.joblib": FileFormat.JOBLIB,
            "c.pt": FileFormat.TORCHSCRIPT,
            "d.json": FileFormat.JSON,
        }
    )
    assert conversion.unconvertible == ("a.pkl", "b.joblib", "c.pt")
    assert conversion.weights == () and conversion.copies == ("d.json",)
