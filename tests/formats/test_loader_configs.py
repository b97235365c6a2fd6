"""Per-file judgement of the configs that point a loader at other files or code (red team round 3).

Shard indexes, sentence-transformers ``modules.json``, diffusers
``model_index.json`` and PEFT ``adapter_config.json`` are analysed by the JSON
analyzer; what needs the folder's listing is in ``test_model_folder.py``.
"""

from __future__ import annotations

import json

import pytest

from tests.corpus.folder_config_cases import SD_MODEL_INDEX, ST_MODULES
from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.findings import Finding, RuleKind, Severity
from weightguard.formats import repo_codes as codes
from weightguard.formats.json_text import JsonAnalyzer
from weightguard.formats.loader_configs import relative_problem
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource


def _scan(name: str, value: object) -> list[Finding]:
    ctx = ScanContext(limits=Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
    return list(JsonAnalyzer().analyze(BytesSource(json.dumps(value).encode()), Location(name), ctx))


def _codes(name: str, value: object) -> list[str]:
    return [f.code for f in _scan(name, value)]


def _index(*shards: object) -> dict[str, object]:
    return {"metadata": {"total_size": 64}, "weight_map": {f"layer{i}.weight": s for i, s in enumerate(shards)}}


@pytest.mark.parametrize(
    "name",
    [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
        "unet/diffusion_pytorch_model.safetensors.index.json",
    ],
)
def test_an_ordinary_shard_index_has_no_findings(name: str) -> None:
    assert _scan(name, _index("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")) == []


@pytest.mark.parametrize(
    ("shard", "problem"),
    [
        ("../outside/evil.safetensors", "climbs with '..'"),
        ("/tmp/outside/evil.safetensors", "absolute path"),
        ("sub/../../evil.safetensors", "climbs with '..'"),
        ("..\\evil.safetensors", "contains a backslash"),
        ("C:/evil.safetensors", "absolute path"),
        ("./model.safetensors", "not in normalised form"),
        ("a//model.safetensors", "not in normalised form"),
        ("model.safetensors\0", "contains NUL"),
        ("", "empty"),
    ],
)
def test_a_weight_map_value_that_is_not_a_plain_name_inside_the_folder_blocks(shard: str, problem: str) -> None:
    # Red team round 3 (index_escape.py): transformers joins weight_map values onto the folder unchecked.
    assert relative_problem(shard) == problem
    findings = _scan("model.safetensors.index.json", _index("model-00001.safetensors", shard))
    assert [f.code for f in findings] == [codes.INDEX_ESCAPE.code]
    assert findings[0].severity is Severity.HIGH and problem in findings[0].message


def test_a_weight_map_in_a_json_of_any_name_is_checked_too() -> None:
    assert _codes("config.json", _index("../evil.safetensors")) == [codes.INDEX_ESCAPE.code]


@pytest.mark.parametrize("weight_map", [["model.safetensors"], "model.safetensors", 3])
def test_a_weight_map_of_the_wrong_type_is_a_finding_not_a_crash(weight_map: object) -> None:
    assert _codes("model.safetensors.index.json", {"weight_map": weight_map}) == [codes.INDEX_MALFORMED.code]


def test_weight_map_values_that_are_not_strings_are_malformed() -> None:
    assert _codes("model.safetensors.index.json", _index("a.safetensors", 7, None)) == [codes.INDEX_MALFORMED.code]


def test_an_index_json_without_a_weight_map_is_not_a_shard_index() -> None:
    assert _scan("faiss.index.json", {"dimension": 8}) == []


def test_an_ordinary_sentence_transformers_modules_json_has_no_findings() -> None:
    assert _scan("modules.json", ST_MODULES) == []


@pytest.mark.parametrize(
    "kind", ["custom_st.Payload", "os.system", "sentence_transformers", "sentence_transformersX.a"]
)
def test_a_module_type_outside_the_sentence_transformers_namespace_blocks(kind: str) -> None:
    # Red team round 3 (st_local_module.py): sentence-transformers 5.1.2 imported custom_st.py without opt-in.
    modules = [*ST_MODULES, {"idx": 3, "name": "3", "path": "3_Payload", "type": kind}]
    findings = _scan("modules.json", modules)
    assert [f.code for f in findings] == [codes.ST_CUSTOM_MODULE.code]
    assert findings[0].severity.rank >= Severity.HIGH.rank


@pytest.mark.parametrize("path", ["../other_model/1_Pooling", "/opt/models/pooling", "1_Pooling/../../x"])
def test_a_module_path_that_leaves_the_folder_blocks(path: str) -> None:
    modules = [{"idx": 0, "name": "0", "path": path, "type": "sentence_transformers.models.Pooling"}]
    assert _codes("modules.json", modules) == [codes.ST_PATH_ESCAPE.code]


@pytest.mark.parametrize("value", [{"0": "x"}, [{"idx": 0}], [3], [{"type": 3, "path": ""}]])
def test_a_malformed_modules_json_is_a_finding(value: object) -> None:
    assert _codes("modules.json", value) == [codes.LOADER_CONFIG_MALFORMED.code]


def test_an_ordinary_diffusers_model_index_has_no_findings() -> None:
    assert _scan("model_index.json", SD_MODEL_INDEX) == []


def test_a_custom_pipeline_class_blocks() -> None:
    # diffusers reads _class_name ["pipeline", "MyPipe"] as pipeline.py in the folder.
    value = {**SD_MODEL_INDEX, "_class_name": ["pipeline", "MyPipe"]}
    assert _codes("model_index.json", value) == [codes.DIFFUSERS_CUSTOM_CODE.code]


@pytest.mark.parametrize("library", ["mypkg.models", "os.path", "Evil", "../mymod"])
def test_a_component_library_diffusers_does_not_know_blocks(library: str) -> None:
    value = {**SD_MODEL_INDEX, "unet": [library, "UNet2DConditionModel"]}
    assert _codes("model_index.json", value) == [codes.DIFFUSERS_FOREIGN_LIBRARY.code]


def test_a_unet_config_with_two_item_lists_is_not_a_pipeline_index() -> None:
    unet = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "up_block_types": ["Up", "Cross.Up"]}
    assert _scan("unet/config.json", unet) == []


@pytest.mark.parametrize("base", ["/home/me/models/llama-7b", "../llama", "./base", "C:\\models\\llama", "a/b/c"])
def test_a_peft_base_model_on_a_local_path_is_noted_but_does_not_block(base: str) -> None:
    findings = _scan("adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": base, "r": 8})
    assert [f.code for f in findings] == [codes.PEFT_LOCAL_BASE.code]
    assert findings[0].severity is Severity.LOW and findings[0].kind is RuleKind.FINDING


@pytest.mark.parametrize("base", ["meta-llama/Llama-2-7b-hf", "gpt2", None])
def test_a_peft_base_model_named_by_hub_id_is_the_normal_case(base: str | None) -> None:
    assert _scan("adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": base}) == []
