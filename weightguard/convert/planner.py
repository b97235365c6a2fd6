"""Plan a conversion: which files become safetensors, under which names.

Names follow Hugging Face's converter: ``pytorch_model*.bin`` becomes
``model*.safetensors``; any other weight file keeps its stem. A sharded
checkpoint's ``pytorch_model.bin.index.json`` becomes
``model.safetensors.index.json`` with the same structure and a renamed
``weight_map``. Everything else is copied unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from weightguard.convert.interface import ConversionPlan, PlannedFile
from weightguard.errors import ConversionError
from weightguard.formats.detect import detect
from weightguard.formats.interface import PICKLE_BASED, FileFormat
from weightguard.limits import Limits
from weightguard.sources.interface import ArtifactFile

TORCH_FORMATS = frozenset({FileFormat.PYTORCH_ZIP, FileFormat.PYTORCH_LEGACY})
# Pickle-based files that hold code or arbitrary objects, not a tensor dict: copying them unchanged
# would carry pickles into the "safe" output, so the conversion refuses them instead.
UNCONVERTIBLE = PICKLE_BASED - TORCH_FORMATS
INDEX_NAME = "pytorch_model.bin.index.json"
OUTPUT_INDEX = "model.safetensors.index.json"


def output_name(relpath: str) -> str:
    """The safetensors name for a weight file."""
    path = PurePosixPath(relpath)
    name = path.name
    if name.startswith("pytorch_model") and name.count(".") == 1:
        stem = "model" + name[len("pytorch_model") :].rsplit(".", 1)[0]
    else:
        stem = name.split(".", 1)[0] if "." in name else name
    return str(path.with_name(stem + ".safetensors"))


def formats_of(files: Sequence[ArtifactFile], limits: Limits) -> dict[str, FileFormat]:
    """Detect each file's format from its bytes, to plan the conversion.

    Detection only (a few header reads per file): the full scan that decides
    whether a weight file may be loaded runs later, on the private copy that
    is loaded (see ``run.py``); a file detected wrongly here is either copied
    unchanged or refused by that scan, never loaded unscanned.
    """
    return {f.relpath: detect(f.source, limits).format for f in files}


def plan(formats: Mapping[str, FileFormat]) -> ConversionPlan:
    """Plan the conversion of a model whose files have these detected formats.

    Raises:
        ConversionError: two weight files would get the same output name.
    """
    weights: list[PlannedFile] = []
    copies: list[str] = []
    index: tuple[str, str] | None = None
    unconvertible: list[str] = []
    for relpath, fmt in sorted(formats.items()):
        if fmt in UNCONVERTIBLE:
            unconvertible.append(relpath)
        elif fmt in TORCH_FORMATS:
            weights.append(PlannedFile(relpath, output_name(relpath), "torch"))
        elif fmt is FileFormat.NUMPY_NPZ:
            weights.append(PlannedFile(relpath, output_name(relpath), "npz"))
        elif PurePosixPath(relpath).name == INDEX_NAME:
            index = (relpath, str(PurePosixPath(relpath).with_name(OUTPUT_INDEX)))
        else:
            copies.append(relpath)
    outputs = [w.output for w in weights]
    clash = {o for o in outputs if outputs.count(o) > 1} | (set(outputs) & set(copies))
    if clash:
        raise ConversionError(f"conversion would write {sorted(clash)} twice", hint="rename the clashing files first")
    return ConversionPlan(tuple(weights), tuple(copies), index, tuple(unconvertible))


def rename_index(data: bytes, renames: Mapping[str, str]) -> bytes:
    """Rewrite a sharded checkpoint index: same structure, ``weight_map`` pointing at the new shards.

    Raises:
        ConversionError: the index is not the JSON object Hugging Face writes.
    """
    try:
        index = json.loads(data)
        weight_map = index["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConversionError(f"unreadable checkpoint index: {exc}") from exc
    if not isinstance(weight_map, dict):
        raise ConversionError("unreadable checkpoint index: weight_map is not an object")
    index["weight_map"] = {k: renames.get(v, v) for k, v in weight_map.items()}
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
