"""Issue 15: "is this a pickle" is what CPython's unpickler does with the bytes, over the whole file."""

from __future__ import annotations

import pickle

import pytest

from weightguard.formats.detect import detect_bytes, pickle_stream_at
from weightguard.formats.interface import Confidence, FileFormat
from weightguard.sources.interface import BytesSource

_CALL = b"cos\nsystem\n(Vtrue\ntR."


def _formats(data: bytes) -> list[FileFormat]:
    return [c.format for c in detect_bytes(data).candidates]


@pytest.mark.parametrize(
    "text",
    [
        b"# My model\n\nThis model card describes a model.\n",
        b'{"architectures": ["BertModel"], "hidden_size": 768}\n',
        b'{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}',
        b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n",
        b"#version: 0.2\n\xc4\xa0 t\nh e\n",
        b"---\nlicense: apache-2.0\nlanguage: en\n---\n# Card\n",
        b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        b"Apache License\n  Version 2.0, January 2004\n",
        b"apple\nbanana\n",
        b"import torch\nmodel = torch.nn.Linear(2, 2)\n",
    ],
)
def test_readme_config_and_tokenizer_text_is_no_pickle(text: bytes) -> None:
    assert FileFormat.PICKLE not in _formats(text)


def test_text_that_pickle_load_runs_is_a_pickle_candidate_too() -> None:
    data = b"I0x1F\n0" + _CALL  # every byte printable: also TEXT
    detection = detect_bytes(data)
    assert detection.format is FileFormat.PICKLE
    assert detection.candidates[0].confidence is Confidence.LIKELY
    assert "find_class" in detection.candidates[0].evidence
    assert FileFormat.TEXT in _formats(data)


def test_a_global_far_past_the_first_64_kib_is_found() -> None:
    data = b"V" + b"x" * (300 * 1024) + b"\n0" + _CALL
    assert detect_bytes(data).format is FileFormat.PICKLE


def test_a_stream_that_only_returns_a_value_is_still_a_pickle() -> None:
    assert detect_bytes(pickle.dumps([1, 2, 3], protocol=0)).format is FileFormat.PICKLE


def test_a_valid_start_that_cpython_rejects_before_any_global_is_no_pickle() -> None:
    # The old prefix heuristic called any PROTO start a pickle; CPython raises at the underflow.
    assert FileFormat.PICKLE not in _formats(b"\x80\x02a" + _CALL)


def test_a_stream_still_valid_at_the_detection_bound_is_a_pickle() -> None:
    data = b"N0" * 300_000 + b"N."
    assert detect_bytes(data).format is FileFormat.PICKLE


def test_a_pickle_in_a_data_region_must_reach_code_or_stop() -> None:
    region = b"\x00" * 8 + pickle.dumps({"a": 1}, protocol=2)
    assert pickle_stream_at(BytesSource(region), 8)
    assert not pickle_stream_at(BytesSource(b"\x80\x02\xff\xff"), 0)
    assert pickle_stream_at(BytesSource(b"\x80\x02" + _CALL), 0)
