"""Corpus cases of red team round 3 (model folders): configs that send a loader outside the verified bytes.

Blocked: a shard index naming a file outside the folder (relative and
absolute), a sentence-transformers ``modules.json`` whose module is the
folder's own code, a diffusers ``model_index.json`` with a custom pipeline or a
component from an unknown library. Approved: the ordinary forms of each, and a
sharded safetensors folder with every shard present. Each blocked case is one
file, judged on its own; what needs the listing (a missing shard, a component
shipped as a ``.py``) is specified in ``tests/formats/test_model_folder.py``.
"""

from __future__ import annotations

import json

from tests.corpus.spec import CaseList, Payload
from tests.real_repo_builders import safetensors

FOLDER_BLOCKED = CaseList("blocked")
FOLDER_APPROVED = CaseList("approved")
_RT3 = "red team round 3 (model folders; issue 15 promise, issue 16 binding)"
# The ordinary configs, shared with the per-file and folder tests of tests/formats.
ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
SD_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "image_encoder": [None, None],
    "requires_safety_checker": True,
}


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2).encode()


def _index(*shards: str) -> bytes:
    return _json({"metadata": {"total_size": 128}, "weight_map": {f"layers.{i}.w": s for i, s in enumerate(shards)}})


@FOLDER_BLOCKED.case("folders/rel/model.safetensors.index.json", f"{_RT3}: weight_map value ../outside/…")
def index_relative_escape(_: Payload) -> bytes:
    return _index("model-00001-of-00002.safetensors", "../outside/evil.safetensors")


@FOLDER_BLOCKED.case("folders/abs/pytorch_model.bin.index.json", f"{_RT3}: weight_map value is an absolute path")
def index_absolute_escape(_: Payload) -> bytes:
    return _index("/tmp/outside/pytorch_model.bin")


@FOLDER_BLOCKED.case("folders/st/modules.json", f"{_RT3}: modules.json type custom_st.Payload (ST 5.x imports it)")
def st_custom_module(_: Payload) -> bytes:
    return _json([*ST_MODULES, {"idx": 3, "name": "3", "path": "", "type": "custom_st.Payload"}])


@FOLDER_BLOCKED.case("folders/sd-pipe/model_index.json", f"{_RT3}: custom diffusers pipeline [module, class]")
def diffusers_custom_pipeline(_: Payload) -> bytes:
    return _json({**SD_MODEL_INDEX, "_class_name": ["pipeline", "MyPipe"]})


@FOLDER_BLOCKED.case("folders/sd-lib/model_index.json", f"{_RT3}: diffusers component from an unknown library")
def diffusers_foreign_library(_: Payload) -> bytes:
    return _json({**SD_MODEL_INDEX, "unet": ["mypkg.models", "MyUNet"]})


@FOLDER_APPROVED.case("folders-clean/sharded", f"{_RT3}: sharded safetensors with every shard present")
def sharded_safetensors(_: Payload) -> dict[str, bytes]:
    shards = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    files = {name: safetensors(i) for i, name in enumerate(shards)}
    files["model.safetensors.index.json"] = _index(*shards)
    return files


@FOLDER_APPROVED.case("folders-clean/st/modules.json", f"{_RT3}: Transformer, Pooling, Normalize modules")
def st_modules(_: Payload) -> bytes:
    return _json(ST_MODULES)


@FOLDER_APPROVED.case("folders-clean/sd/model_index.json", f"{_RT3}: Stable Diffusion model_index.json")
def diffusers_model_index(_: Payload) -> bytes:
    return _json(SD_MODEL_INDEX)
