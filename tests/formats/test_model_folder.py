"""Folder-level checks through ``weightguard verify DIR`` (red team round 3, issues 15 and 16).

An approval binds the bytes that were scanned: a sharded index that sends the
loader outside the folder, or to a shard that is not there, must not pass, and
neither may a sentence-transformers or diffusers folder that imports its own
Python code. Ordinary sharded, sentence-transformers and diffusers folders are
approved. Folders are built in code; nothing is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.corpus.folder_config_cases import SD_MODEL_INDEX, ST_MODULES
from tests.real_repo_builders import safetensors
from weightguard.api import scan
from weightguard.cli import build_app
from weightguard.formats import repo_codes as codes

SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def _verify(target: Path) -> tuple[int, str, list[str]]:
    result = CliRunner().invoke(build_app(), ["verify", str(target), "--format", "json"])
    report = json.loads(result.stdout)
    return result.exit_code, report["verdict"], sorted({f["code"] for f in report["findings"]})


def _sharded(
    root: Path, *names: str, shards: tuple[str, ...] = SHARDS, index: str = "model.safetensors.index.json"
) -> Path:
    """A sharded checkpoint whose index names ``names`` (written: ``shards``) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    for i, shard in enumerate(shards):
        (root / shard).parent.mkdir(parents=True, exist_ok=True)
        (root / shard).write_bytes(safetensors(i))
    weight_map = {f"layers.{i}.w": name for i, name in enumerate(names or shards)}
    (root / index).parent.mkdir(parents=True, exist_ok=True)
    (root / index).write_text(json.dumps({"metadata": {"total_size": 128}, "weight_map": weight_map}))
    return root


def test_an_ordinary_sharded_folder_is_approved(tmp_path: Path) -> None:
    assert _verify(_sharded(tmp_path / "model")) == (0, "approved", [])


def test_a_diffusers_subfolder_index_names_shards_beside_it(tmp_path: Path) -> None:
    shards = tuple(f"unet/{s}" for s in SHARDS)
    root = _sharded(
        tmp_path / "pipe", *SHARDS, shards=shards, index="unet/diffusion_pytorch_model.safetensors.index.json"
    )
    assert _verify(root) == (0, "approved", [])


def test_an_index_pointing_outside_the_folder_is_rejected(tmp_path: Path) -> None:
    # Red team round 3, index_escape.py: transformers loaded ../outside/evil.safetensors (and an absolute path).
    outside = tmp_path / "outside" / "evil.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(safetensors(7))
    for name, target in (("rel", "../outside/evil.safetensors"), ("abs", str(outside))):
        root = _sharded(tmp_path / name, SHARDS[0], target)
        assert _verify(root) == (1, "rejected", [codes.INDEX_ESCAPE.code])


def test_a_pytorch_bin_index_pointing_outside_is_rejected(tmp_path: Path) -> None:
    root = _sharded(tmp_path / "bin", "../outside/pytorch_model.bin", index="pytorch_model.bin.index.json")
    assert _verify(root) == (1, "rejected", [codes.INDEX_ESCAPE.code])


def test_leading_whitespace_does_not_hide_a_config_json_load_reads(tmp_path: Path) -> None:
    # Review: json.load skips any amount of leading whitespace; 5,000 spaces once made the file plain text.
    root = _sharded(tmp_path / "padded", SHARDS[0], "../outside/evil.safetensors")
    index = root / "model.safetensors.index.json"
    index.write_text(" " * 5000 + index.read_text())
    assert _verify(root) == (1, "rejected", [codes.INDEX_ESCAPE.code])


def test_a_variant_index_is_an_index_too(tmp_path: Path) -> None:
    # transformers' _add_variant: model.safetensors.index.fp16.json names the fp16 shards.
    root = _sharded(tmp_path / "fp16", *SHARDS, shards=SHARDS[:1], index="model.safetensors.index.fp16.json")
    assert _verify(root) == (2, "incomplete", [codes.INDEX_MISSING_SHARD.code])


def test_a_missing_shard_leaves_the_verdict_incomplete(tmp_path: Path) -> None:
    root = _sharded(tmp_path / "partial", *SHARDS, shards=SHARDS[:1])
    assert _verify(root) == (2, "incomplete", [codes.INDEX_MISSING_SHARD.code])


def test_shard_names_are_compared_exactly_as_on_posix(tmp_path: Path) -> None:
    # A case-insensitive file system would hand the loader another file than the one named.
    root = _sharded(tmp_path / "case", SHARDS[0], SHARDS[1].upper())
    assert _verify(root) == (2, "incomplete", [codes.INDEX_MISSING_SHARD.code])


def test_scan_of_a_folder_checks_its_shards_too(tmp_path: Path) -> None:
    root = _sharded(tmp_path / "partial", *SHARDS, shards=SHARDS[:1])
    report = scan([root])
    assert report.verdict == "incomplete"
    assert [f.code for f in report.findings] == [codes.INDEX_MISSING_SHARD.code]
    assert report.findings[0].path.rpartition("/")[2] == "model.safetensors.index.json"


def _st_folder(root: Path, modules: list[dict[str, object]]) -> Path:
    (root / "1_Pooling").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (root / "model.safetensors").write_bytes(safetensors())
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True})
    )
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    return root


def test_an_ordinary_sentence_transformers_folder_is_approved(tmp_path: Path) -> None:
    assert _verify(_st_folder(tmp_path / "st", ST_MODULES)) == (0, "approved", [])


def test_a_sentence_transformers_folder_importing_its_own_module_is_rejected(tmp_path: Path) -> None:
    # Red team round 3, st_local_module.py: sentence-transformers 5.1.2 ran custom_st.py by default.
    modules = [*ST_MODULES, {"idx": 3, "name": "3", "path": "", "type": "custom_st.Payload"}]
    root = _st_folder(tmp_path / "st", modules)
    (root / "custom_st.py").write_text("import os\nos.system('touch marker')\n")
    assert _verify(root) == (1, "rejected", [codes.ST_CUSTOM_MODULE.code])


def test_a_modules_json_spelled_in_another_case_is_judged_all_the_same(tmp_path: Path) -> None:
    # On macOS and Windows, sentence-transformers' os.path.exists("modules.json") finds Modules.json.
    modules = [*ST_MODULES, {"idx": 3, "name": "3", "path": "", "type": "custom_st.Payload"}]
    root = _st_folder(tmp_path / "st", modules)
    (root / "modules.json").rename(root / "Modules.json")
    (root / "custom_st.py").write_text("import os\nos.system('touch marker')\n")
    assert _verify(root) == (1, "rejected", [codes.ST_CUSTOM_MODULE.code])


def _diffusers_folder(root: Path, model_index: dict[str, object]) -> Path:
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(model_index))
    for component in ("unet", "vae", "text_encoder"):
        (root / component).mkdir()
        (root / component / "config.json").write_text(json.dumps({"_class_name": "X", "_diffusers_version": "0.6.0"}))
        (root / component / "diffusion_pytorch_model.safetensors").write_bytes(safetensors())
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "PNDMScheduler"}))
    return root


def test_an_ordinary_diffusers_folder_is_approved(tmp_path: Path) -> None:
    assert _verify(_diffusers_folder(tmp_path / "sd", SD_MODEL_INDEX)) == (0, "approved", [])


def test_a_diffusers_component_shipped_as_python_in_the_folder_is_rejected(tmp_path: Path) -> None:
    # Red team round 3 control: ["mymod", "MyCls"] + unet/mymod.py; older diffusers imported it unasked.
    root = _diffusers_folder(tmp_path / "sd", {**SD_MODEL_INDEX, "unet": ["mymod", "MyCls"]})
    (root / "unet" / "mymod.py").write_text("class MyCls: pass\n")
    assert _verify(root) == (1, "rejected", [codes.DIFFUSERS_CUSTOM_CODE.code])


def test_a_diffusers_component_shipped_as_a_package_is_rejected(tmp_path: Path) -> None:
    root = _diffusers_folder(tmp_path / "sd", {**SD_MODEL_INDEX, "unet": ["mymod", "MyCls"]})
    (root / "mymod").mkdir()
    (root / "mymod" / "__init__.py").write_text("class MyCls: pass\n")
    assert _verify(root) == (1, "rejected", [codes.DIFFUSERS_CUSTOM_CODE.code])


def test_a_custom_diffusers_pipeline_is_rejected(tmp_path: Path) -> None:
    root = _diffusers_folder(tmp_path / "sd", {**SD_MODEL_INDEX, "_class_name": ["pipeline", "MyPipe"]})
    (root / "pipeline.py").write_text("class MyPipe: pass\n")
    assert _verify(root) == (1, "rejected", [codes.DIFFUSERS_CUSTOM_CODE.code])


def test_a_peft_adapter_with_a_local_base_is_approved_with_a_note(tmp_path: Path) -> None:
    root = tmp_path / "adapter"
    root.mkdir()
    (root / "adapter_model.safetensors").write_bytes(safetensors())
    config = {"peft_type": "LORA", "base_model_name_or_path": "/home/me/llama", "r": 8, "target_modules": ["q_proj"]}
    (root / "adapter_config.json").write_text(json.dumps(config))
    assert _verify(root) == (0, "approved", [codes.PEFT_LOCAL_BASE.code])
