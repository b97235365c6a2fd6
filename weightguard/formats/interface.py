"""Format detection records: what a run of bytes really is.

Detection looks at content only, never at the file name (a ``.bin`` that is a
zip, a ``.safetensors`` that is a pickle and a polyglot valid as two formats
must all be caught). It returns ranked candidates, each with the evidence
that supports it; the first candidate is the format the file is analysed as,
and every other plausible candidate is analysed too (polyglots).
Not handled here: deciding whether a format is allowed (policy) or what the
content does (analysis).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FileFormat(str, Enum):
    """Every format weightguard can recognise. Values are used in policies and reports."""

    SAFETENSORS = "safetensors"
    PYTORCH_ZIP = "pytorch-zip"
    PYTORCH_LEGACY = "pytorch-legacy"
    TORCHSCRIPT = "torchscript"
    PICKLE = "pickle"
    JOBLIB = "joblib"
    NUMPY = "numpy"
    NUMPY_NPZ = "numpy-npz"
    KERAS = "keras"
    HDF5 = "hdf5"
    ONNX = "onnx"
    GGUF = "gguf"
    ZIP = "zip"
    TAR = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZLIB = "zlib"
    SEVEN_ZIP = "7z"
    SENTENCEPIECE = "sentencepiece"
    FLAX_MSGPACK = "flax-msgpack"
    TFLITE = "tflite"
    IMAGE = "image"
    JSON = "json"
    TEXT = "text"
    EMPTY = "empty"
    UNKNOWN = "unknown"

    @property
    def pickle_based(self) -> bool:
        """True for formats whose loading runs a pickle."""
        return self in PICKLE_BASED


PICKLE_BASED = frozenset(
    {
        FileFormat.PYTORCH_ZIP,
        FileFormat.PYTORCH_LEGACY,
        FileFormat.TORCHSCRIPT,
        FileFormat.PICKLE,
        FileFormat.JOBLIB,
    }
)

CONTAINERS = frozenset(
    {
        FileFormat.ZIP,
        FileFormat.TAR,
        FileFormat.GZIP,
        FileFormat.BZIP2,
        FileFormat.XZ,
        FileFormat.ZLIB,
        FileFormat.SEVEN_ZIP,
        FileFormat.NUMPY_NPZ,
        FileFormat.KERAS,
        FileFormat.PYTORCH_ZIP,
        FileFormat.TORCHSCRIPT,
    }
)


class Confidence(str, Enum):
    """How sure detection is of a candidate."""

    CERTAIN = "certain"  # a full structural check passed (e.g. zip central directory parsed)
    LIKELY = "likely"  # magic bytes and a plausible header
    POSSIBLE = "possible"  # weak signal only (e.g. text that might be protocol-0 pickle)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One plausible reading of the bytes."""

    format: FileFormat
    confidence: Confidence
    evidence: str


@dataclass(frozen=True, slots=True)
class Detection:
    """Ranked candidates, best first. Never empty: at worst ``UNKNOWN``."""

    candidates: tuple[Candidate, ...]

    @property
    def format(self) -> FileFormat:
        """The best candidate's format."""
        return self.candidates[0].format

    @property
    def polyglot(self) -> bool:
        """True when two or more unrelated formats are at least LIKELY."""
        strong = {c.format for c in self.candidates if c.confidence is not Confidence.POSSIBLE}
        return len(strong) > 1
