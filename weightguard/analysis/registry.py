"""The explicit registry of analyzers per format (no registration by import side effect).

Adding an analyzer touches its own module, this tuple, and its tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from weightguard.analysis.containers import CompressedAnalyzer, SevenZipAnalyzer, TarAnalyzer, ZipAnalyzer
from weightguard.analysis.interface import Analyzer
from weightguard.analysis.joblib_format import JoblibAnalyzer
from weightguard.analysis.numpy_formats import NumpyAnalyzer
from weightguard.analysis.pickle_analyzer import PickleAnalyzer
from weightguard.analysis.torch_formats import LegacyTorchAnalyzer, TorchZipAnalyzer
from weightguard.formats.flax_msgpack import FlaxMsgpackAnalyzer
from weightguard.formats.gguf import GgufAnalyzer
from weightguard.formats.hdf5 import HDF5Analyzer
from weightguard.formats.images import ImageAnalyzer
from weightguard.formats.interface import FileFormat
from weightguard.formats.json_text import JsonAnalyzer
from weightguard.formats.onnx import OnnxAnalyzer
from weightguard.formats.safetensors import SafetensorsAnalyzer
from weightguard.formats.sentencepiece import SentencePieceAnalyzer
from weightguard.formats.tflite import TfliteAnalyzer


def analyzers() -> tuple[Analyzer, ...]:
    """Every analyzer, in the order they run for a format."""
    return (
        PickleAnalyzer(),
        JoblibAnalyzer(),
        TorchZipAnalyzer(),
        LegacyTorchAnalyzer(),
        ZipAnalyzer(),
        TarAnalyzer(),
        CompressedAnalyzer(),
        SevenZipAnalyzer(),
        NumpyAnalyzer(),
        SafetensorsAnalyzer(),
        GgufAnalyzer(),
        OnnxAnalyzer(),
        HDF5Analyzer(),
        JsonAnalyzer(),
        SentencePieceAnalyzer(),
        FlaxMsgpackAnalyzer(),
        TfliteAnalyzer(),
        ImageAnalyzer(),
    )


def default_analyzers() -> Mapping[FileFormat, Sequence[Analyzer]]:
    """Map each format to the analyzers that handle it."""
    table: dict[FileFormat, list[Analyzer]] = {}
    for analyzer in analyzers():
        for fmt in analyzer.formats:
            table.setdefault(fmt, []).append(analyzer)
    return table
