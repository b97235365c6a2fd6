"""Conversion records: the plan, and the proof that a conversion was lossless.

The :class:`ConversionProof` is a pydantic model because it crosses into the
report. Not handled here: loading or writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from weightguard.errors import ConversionError
from weightguard.policy.base import StrictModel


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One weight file and the safetensors file it becomes."""

    source: str
    output: str
    kind: str  # "torch" | "npz"


@dataclass(frozen=True, slots=True)
class ConversionPlan:
    """What a conversion will do."""

    weights: tuple[PlannedFile, ...]
    copies: tuple[str, ...]
    index: tuple[str, str] | None  # (source index json, output index json)
    unconvertible: tuple[str, ...] = ()  # pickle-based files with no safetensors form (never copied as they are)


class ConvertedFile(StrictModel):
    """The proof for one converted file."""

    source: str
    source_sha256: str
    output: str
    output_sha256: str = ""
    tensors: int = 0
    compared: int = Field(default=0, description="tensors reloaded and compared bit for bit")
    aliases: dict[str, str] = Field(default_factory=dict, description="removed name -> kept name")
    dropped: list[str] = Field(default_factory=list, description="non-tensor entries not carried over")
    unwrapped: str | None = Field(default=None, description="dotted path of the entry holding the weights")
    layout: str = Field(default="plain", description="plain | key | lightning | deepspeed | wrapped")
    left_out: list[str] = Field(
        default_factory=list, description="entries beside the weights (training state), not converted"
    )


class RefusedFile(StrictModel):
    """A file of the model that was not converted or copied, and why."""

    path: str
    code: str
    reason: str
    hint: str = ""


class ConversionProof(StrictModel):
    """The conversion section of the report."""

    output_dir: str
    files: list[ConvertedFile] = Field(default_factory=list)
    copied: list[str] = Field(default_factory=list)
    refused: list[RefusedFile] = Field(default_factory=list, description="files not written, with the reason")
    index: str | None = None
    manifest: dict[str, str] = Field(default_factory=dict, description="sha256 of every file written, by relpath")
    manifest_root_digest: str = ""
    signature: str | None = None


__all__ = ["ConversionError", "ConversionPlan", "ConversionProof", "ConvertedFile", "PlannedFile", "RefusedFile"]
