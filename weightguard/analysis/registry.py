"""The explicit registry of analyzers per format (no registration by import side effect).

Adding an analyzer touches its own module, ``ANALYZERS`` below, and its tests.

Each entry names the analyzer's module and class and the formats it handles,
so that a scan imports an analyzer only when it first meets one of its
formats: a pre-commit scan of one pickle does not import the ONNX, GGUF, HDF5
and archive parsers (start-up is paid on every hook run; see
``benchmarks/startup.py``). ``tests/analysis/test_registry.py`` checks the
formats written here against each class's own ``formats``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence

from weightguard.analysis.interface import Analyzer
from weightguard.formats.interface import FileFormat

F = FileFormat
# (module, class, formats), in the order analyzers run for a format.
ANALYZERS: tuple[tuple[str, str, frozenset[FileFormat]], ...] = (
    ("weightguard.analysis.pickle_analyzer", "PickleAnalyzer", frozenset({F.PICKLE})),
    ("weightguard.analysis.joblib_format", "JoblibAnalyzer", frozenset({F.JOBLIB})),
    ("weightguard.analysis.torch_formats", "TorchZipAnalyzer", frozenset({F.PYTORCH_ZIP, F.TORCHSCRIPT})),
    ("weightguard.analysis.torch_formats", "LegacyTorchAnalyzer", frozenset({F.PYTORCH_LEGACY})),
    ("weightguard.analysis.containers", "ZipAnalyzer", frozenset({F.ZIP, F.NUMPY_NPZ, F.KERAS})),
    ("weightguard.analysis.containers", "TarAnalyzer", frozenset({F.TAR})),
    ("weightguard.analysis.containers", "CompressedAnalyzer", frozenset({F.GZIP, F.BZIP2, F.XZ, F.ZLIB})),
    ("weightguard.analysis.containers", "SevenZipAnalyzer", frozenset({F.SEVEN_ZIP})),
    ("weightguard.analysis.numpy_formats", "NumpyAnalyzer", frozenset({F.NUMPY})),
    ("weightguard.formats.safetensors", "SafetensorsAnalyzer", frozenset({F.SAFETENSORS})),
    ("weightguard.formats.gguf", "GgufAnalyzer", frozenset({F.GGUF})),
    ("weightguard.formats.onnx", "OnnxAnalyzer", frozenset({F.ONNX})),
    ("weightguard.formats.hdf5", "HDF5Analyzer", frozenset({F.HDF5})),
    ("weightguard.formats.json_text", "JsonAnalyzer", frozenset({F.JSON, F.TEXT})),
    ("weightguard.formats.sentencepiece", "SentencePieceAnalyzer", frozenset({F.SENTENCEPIECE})),
    ("weightguard.formats.flax_msgpack", "FlaxMsgpackAnalyzer", frozenset({F.FLAX_MSGPACK})),
    ("weightguard.formats.tflite", "TfliteAnalyzer", frozenset({F.TFLITE})),
    ("weightguard.formats.images", "ImageAnalyzer", frozenset({F.IMAGE})),
)


def _make(module: str, name: str) -> Analyzer:
    analyzer: Analyzer = getattr(importlib.import_module(module), name)()
    return analyzer


def analyzers() -> tuple[Analyzer, ...]:
    """Every analyzer, in the order they run for a format."""
    return tuple(_make(module, name) for module, name, _ in ANALYZERS)


class _AnalyzerTable(Mapping[FileFormat, Sequence[Analyzer]]):
    """Format -> its analyzers; an analyzer is built (and its module imported) when first looked up.

    One instance per analyzer serves all its formats, as a table built eagerly would.
    """

    def __init__(self) -> None:
        self._instances: dict[tuple[str, str], Analyzer] = {}
        self._by_format: dict[FileFormat, tuple[Analyzer, ...]] = {}

    def __getitem__(self, fmt: FileFormat) -> Sequence[Analyzer]:
        if fmt not in self._by_format:
            entries = [(module, name) for module, name, formats in ANALYZERS if fmt in formats]
            for key in entries:
                if key not in self._instances:
                    self._instances[key] = _make(*key)
            if entries:
                self._by_format[fmt] = tuple(self._instances[key] for key in entries)
        return self._by_format[fmt]  # KeyError for a format no analyzer handles, as a Mapping must

    def __iter__(self) -> Iterator[FileFormat]:
        return iter(dict.fromkeys(fmt for _, _, formats in ANALYZERS for fmt in formats))

    def __len__(self) -> int:
        return len(dict.fromkeys(fmt for _, _, formats in ANALYZERS for fmt in formats))


def default_analyzers() -> Mapping[FileFormat, Sequence[Analyzer]]:
    """Map each format to the analyzers that handle it (built on first lookup of the format)."""
    return _AnalyzerTable()
