"""JSON configs: strict parsing, duplicate keys, auto_map (trust_remote_code) and Keras-shaped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weightguard.analysis.interface import DetectedPart, Location, PickleSettings, ScanContext
from weightguard.findings import Finding, RuleKind, Severity
from weightguard.formats import header_codes as codes
from weightguard.formats.detect import detect_bytes
from weightguard.formats.interface import Candidate, Confidence, Detection, FileFormat
from weightguard.formats.json_text import JsonAnalyzer
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource


def _scan(data: bytes, limits: Limits | None = None) -> list[Finding]:
    ctx = ScanContext(limits=limits or Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
    return list(JsonAnalyzer().analyze(BytesSource(data), Location("config.json"), ctx))


def _codes(data: bytes) -> list[str]:
    return [f.code for f in _scan(data)]


def test_an_ordinary_model_config_has_no_findings() -> None:
    config = {"model_type": "llama", "hidden_size": 64, "architectures": ["LlamaForCausalLM"], "rope_scaling": None}
    assert _scan(json.dumps(config).encode()) == []


def test_a_tokenizer_json_and_a_safetensors_index_have_no_findings() -> None:
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": []}
    index = {"metadata": {"total_size": 64}, "weight_map": {"embed.weight": "model-00001-of-00002.safetensors"}}
    assert _scan(json.dumps(tokenizer).encode()) == []
    assert _scan(json.dumps(index).encode()) == []


def test_nan_written_by_pythons_json_module_is_accepted_in_configs() -> None:
    assert _scan(json.dumps({"layer_norm_eps": float("nan"), "max": float("inf")}).encode()) == []


def test_plain_text_has_no_findings() -> None:
    assert _scan(b"# model card\n\nuses __import__ in prose, {braces} later\n") == []
    assert _scan(b"a\nb\nab\n" * 10) == []


def test_auto_map_needs_trust_remote_code_and_is_medium() -> None:
    config = {"model_type": "custom", "auto_map": {"AutoModel": "modeling_custom.CustomModel"}}
    findings = _scan(json.dumps(config).encode())
    assert [(f.code, f.severity) for f in findings] == [(codes.CFG_AUTO_MAP.code, Severity.MEDIUM)]
    assert findings[0].evidence["targets"] == "modeling_custom.CustomModel"


def test_a_tokenizer_config_auto_map_with_list_values_is_flagged() -> None:
    config = {"auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}, "model_max_length": 512}
    assert _codes(json.dumps(config).encode()) == [codes.CFG_AUTO_MAP.code]


def test_custom_pipelines_need_trust_remote_code_too() -> None:
    config = {"custom_pipelines": {"my-task": {"impl": "pipeline.MyPipeline", "pt": ["AutoModel"]}}}
    assert _codes(json.dumps(config).encode()) == [codes.CFG_AUTO_MAP.code]


def test_auto_map_pointing_at_another_repository_is_high() -> None:
    config = {"auto_map": {"AutoModel": "someone/other-repo--modeling.Model"}}
    findings = _scan(json.dumps(config).encode())
    assert [f.code for f in findings] == [codes.CFG_AUTO_MAP.code, codes.CFG_REMOTE_CODE_REPO.code]
    assert findings[1].severity is Severity.HIGH


def test_duplicate_keys_are_flagged() -> None:
    findings = _scan(b'{"model_type": "llama", "model_type": "custom"}')
    assert [f.code for f in findings] == [codes.CFG_DUPLICATE_KEY.code]
    assert "'model_type'" in findings[0].message


def test_a_duplicate_auto_map_hiding_behind_a_benign_one_is_still_seen() -> None:
    data = b'{"auto_map": {"AutoModel": "a.B"}, "auto_map": {"AutoModel": "x/y--evil.M"}}'
    assert _codes(data) == [codes.CFG_DUPLICATE_KEY.code, codes.CFG_AUTO_MAP.code, codes.CFG_REMOTE_CODE_REPO.code]


@pytest.mark.parametrize("data", [b'{"a": 1', b'{"a": 1} trailing', b'{"a": "\xff"}', b"[" * 50_000 + b"]" * 50_000])
def test_malformed_json_is_low(data: bytes) -> None:
    findings = _scan(data)
    assert [(f.code, f.severity) for f in findings] == [(codes.CFG_MALFORMED.code, Severity.LOW)]


def test_json_over_max_header_bytes_is_an_error() -> None:
    data = json.dumps({"pad": "x" * 200}).encode()
    findings = _scan(data, Limits(max_header_bytes=100))
    assert [(f.code, f.kind) for f in findings] == [(codes.CFG_TOO_LARGE.code, RuleKind.ERROR)]


def test_a_loose_keras_config_is_checked_like_one() -> None:
    lam = {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "l"}, "registered_name": None}
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [lam]}, "registered_name": None}
    assert _codes(json.dumps(config).encode()) == [codes.KERAS_LAMBDA.code]


def test_a_keras_config_inside_an_archive_is_left_to_the_container_analyzer() -> None:
    # The scanner records the zip's detection (Keras) before its members are analysed.
    lam = {"class_name": "Lambda", "config": {"name": "l"}}
    data = json.dumps({"class_name": "Sequential", "config": {"layers": [lam]}}).encode()
    ctx = ScanContext(limits=Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
    keras = Detection((Candidate(FileFormat.KERAS, Confidence.CERTAIN, "zip with config.json"),))
    inside = Location("model.keras", ("config.json",))
    ctx.parts.extend([DetectedPart(Location("model.keras"), keras), DetectedPart(inside, detect_bytes(data))])
    assert list(JsonAnalyzer().analyze(BytesSource(data), inside, ctx)) == []


def test_a_bert_vocab_starting_with_a_bracketed_token_is_text_not_malformed_json(tmp_path: Path) -> None:
    # issue 18: "[PAD]" opened a would-be JSON array, so vocab.txt got WG-CFG-001 and the strict
    # policy rejected every BERT folder.
    from weightguard.api import scan
    from weightguard.policy.load import load_policy

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    report = scan([vocab], load_policy("builtin:strict"))
    assert report.verdict == "approved" and not report.findings
    broken = tmp_path / "config.json"
    broken.write_text("[1, 2,")
    assert [f.code for f in scan([broken]).findings] == ["WG-CFG-001"]
