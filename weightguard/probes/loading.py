"""Load a Hugging Face model directory for probing: offline, safetensors only, no remote code.

Preconditions (probe P0) are checked before transformers sees the directory:
``config.json`` is plain JSON naming one supported architecture, no file asks
for custom code (``auto_map`` or Python files), and the weights are safetensors.
The model's own preprocessing must load too (a tokenizer, or the image
statistics in ``preprocessor_config.json``), because probing with the wrong
preprocessing gives false results (PROBES.md section 1.4). Anything missing
raises :class:`NotProbedError`: a model that could not be probed is never clean.
Not handled here: scanning the files for hostile content (the scan stage does
that first), or running any probe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from weightguard.errors import ProbeError
from weightguard.probes.interface import Family, ImagePrep, LoadedModel

if TYPE_CHECKING:
    import torch

MAX_JSON_BYTES = 4 * 2**20
_SUFFIXES = {
    "ForSequenceClassification": Family.SEQUENCE_CLASSIFICATION,
    "ForCausalLM": Family.CAUSAL_LM,
    "LMHeadModel": Family.CAUSAL_LM,
    "ForImageClassification": Family.IMAGE_CLASSIFICATION,
}
# Files a tokenizer's vocabulary can come from; without one, transformers may build an empty
# tokenizer from the model type alone, and probing through it would mean nothing.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_JSON_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json")


class NotProbedError(ProbeError):
    """The directory cannot be probed; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, hint="probes need config.json, *.safetensors and the model's tokenizer/processor")
        self.reason = reason


def _read_json(path: Path) -> dict[str, object]:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise NotProbedError("bad-config", f"{path.name} is larger than {MAX_JSON_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotProbedError("bad-config", f"{path.name} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise NotProbedError("bad-config", f"{path.name} is not a JSON object")
    return data


def family_of(architecture: str) -> Family | None:
    """Return the family an architecture class name belongs to, or None when unsupported."""
    for suffix, family in _SUFFIXES.items():
        if architecture.endswith(suffix):
            return family
    return None


def check_directory(root: Path) -> tuple[str, Family, dict[str, object]]:
    """Check the P0 preconditions and return (architecture, family, config) without importing torch."""
    if not root.is_dir():
        raise NotProbedError("not-a-directory", f"{root} is not a model directory")
    if not (root / "config.json").is_file():
        raise NotProbedError("no-config", f"{root} has no config.json")
    configs = {name: _read_json(root / name) for name in _JSON_FILES if (root / name).is_file()}
    for name, data in configs.items():
        if "auto_map" in data:
            raise NotProbedError("custom-code", f"{name} asks for custom code (auto_map); remote code is never run")
    if any(p.is_file() for p in root.glob("*.py")):
        raise NotProbedError("custom-code", f"{root} ships Python files; remote code is never run")
    if not any(p.is_file() for p in root.glob("*.safetensors")):
        raise NotProbedError(
            "no-safetensors", f"{root} has no safetensors weights; probes never load pickle checkpoints"
        )
    config = configs["config.json"]
    archs = config.get("architectures")
    if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
        raise NotProbedError("unsupported-architecture", "config.json must name exactly one architecture")
    family = family_of(archs[0])
    if family is None:
        raise NotProbedError("unsupported-architecture", f"{archs[0]} is not a supported family for probing")
    return archs[0], family, config


def _image_prep(root: Path, config: dict[str, object]) -> ImagePrep:
    path = root / "preprocessor_config.json"
    if not path.is_file():
        raise NotProbedError("no-preprocessing", "image model without preprocessor_config.json")
    prep = _read_json(path)
    size = prep.get("size") or prep.get("crop_size") or {}
    side = config.get("image_size")
    if isinstance(size, dict):
        height = size.get("height", size.get("shortest_edge", side))
        width = size.get("width", size.get("shortest_edge", side))
    else:
        height = width = size
    channels = config.get("num_channels", 3)
    mean, std = prep.get("image_mean", [0.0]), prep.get("image_std", [1.0])
    numbers = (height, width, channels)
    if not all(isinstance(v, int) and 0 < v <= 1024 for v in numbers) or not isinstance(channels, int):
        raise NotProbedError("no-preprocessing", "preprocessor_config.json gives no usable image size")
    if not (isinstance(mean, list) and isinstance(std, list) and all(isinstance(v, int | float) for v in mean + std)):
        raise NotProbedError("no-preprocessing", "preprocessor_config.json has unusable image_mean/image_std")
    if any(float(s) == 0.0 for s in std):
        raise NotProbedError("no-preprocessing", "preprocessor_config.json has a zero image_std")
    return ImagePrep(
        height=int(str(height)),
        width=int(str(width)),
        channels=channels,
        mean=tuple(float(v) for v in (mean * channels)[:channels]),
        std=tuple(float(v) for v in (std * channels)[:channels]),
        normalize=bool(prep.get("do_normalize", True)),
    )


def embedding_matrix(model: torch.nn.Module) -> torch.Tensor:
    """The input token-embedding matrix of a transformers model."""
    layer = model.get_input_embeddings()  # type: ignore[operator]
    weight: torch.Tensor = layer.weight
    return weight


def load_model(root: Path) -> LoadedModel:
    """Load ``root`` for probing (CPU, fp32, eval mode); raise :class:`NotProbedError` when it cannot be."""
    architecture, family, config = check_directory(root)
    try:
        import torch
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise NotProbedError("missing-extra", "probes need the [probes] extra (torch, transformers)") from exc
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    auto = {
        Family.SEQUENCE_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
        Family.CAUSAL_LM: transformers.AutoModelForCausalLM,
        Family.IMAGE_CLASSIFICATION: transformers.AutoModelForImageClassification,
    }[family]
    tokenizer = None
    image = None
    if family is not Family.IMAGE_CLASSIFICATION and not any((root / n).is_file() for n in _TOKENIZER_FILES):
        raise NotProbedError("no-preprocessing", f"{root.name} has no tokenizer vocabulary file")
    # The seam where transformers' own exceptions (any type) enter: anything it raises
    # about this directory means "could not load", which is "not probed", never "clean".
    try:
        if family is Family.IMAGE_CLASSIFICATION:
            image = _image_prep(root, config)
        else:
            tokenizer = transformers.AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=False)
        model = auto.from_pretrained(
            root, local_files_only=True, use_safetensors=True, trust_remote_code=False, dtype=torch.float32
        )
    except NotProbedError:
        raise
    except Exception as exc:  # noqa: BLE001 - foreign-exception seam, see comment above
        raise NotProbedError("load-failed", f"could not load {root.name}: {type(exc).__name__}: {exc}") from exc
    if type(model).__name__ != architecture:
        raise NotProbedError("unsupported-architecture", f"loaded {type(model).__name__}, config names {architecture}")
    model.eval()
    labels = tuple(str(model.config.id2label.get(i, i)) for i in range(int(model.config.num_labels)))
    if family is Family.CAUSAL_LM:
        labels = ()
    elif len(labels) < 2:
        raise NotProbedError("unsupported-architecture", "a classifier with fewer than two labels cannot be probed")
    rows = int(embedding_matrix(model).shape[0]) if tokenizer is not None else 0
    if tokenizer is not None and (len(tokenizer) < 2 or max(tokenizer.get_vocab().values()) >= rows):
        raise NotProbedError("no-preprocessing", "the tokenizer's ids do not fit the model's embedding table")
    if tokenizer is not None and tokenizer.pad_token_id is None:
        # Decoder tokenizers often have no pad token; batching pads with EOS under an attention mask.
        if tokenizer.eos_token_id is None:
            raise NotProbedError("no-preprocessing", "tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        path=root,
        family=family,
        architecture=architecture,
        model=model,
        labels=labels,
        tokenizer=tokenizer,
        image=image,
        parameters=sum(p.numel() for p in model.parameters()),
    )
