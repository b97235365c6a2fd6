"""Issue 18: the inert formats of model repositories are recognised from bytes and validated strictly.

SentencePiece models, Flax msgpack weights, TFLite flatbuffers and images are
detected by their structure (never their names); bytes that only start like
one stay unknown (fail closed), and what the analyzers cannot vouch for is a
finding.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from real_repo_builders import Ext, field, flax_array, flax_weights, jpeg, msgpack, png, sentencepiece_model

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.analysis.registry import default_analyzers
from weightguard.formats.detect import detect_bytes
from weightguard.formats.interface import Confidence, FileFormat
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource


def _codes(data: bytes, fmt: FileFormat, limits: Limits | None = None) -> set[str]:
    ctx = ScanContext(limits=limits or Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
    return {f.code for a in default_analyzers()[fmt] for f in a.analyze(BytesSource(data), Location("f"), ctx)}


def _detected(data: bytes, limits: Limits | None = None) -> tuple[FileFormat, Confidence]:
    best = detect_bytes(data, limits).candidates[0]
    return best.format, best.confidence


# --- SentencePiece ------------------------------------------------------------------------
def test_a_sentencepiece_model_is_detected_by_a_whole_walk_and_has_no_findings() -> None:
    model = sentencepiece_model()
    assert _detected(model) == (FileFormat.SENTENCEPIECE, Confidence.CERTAIN)
    assert _codes(model, FileFormat.SENTENCEPIECE) == set()


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("truncated", lambda m: m[:-1]),
        ("an unknown ModelProto field", lambda m: m + field(6, b"x")),
        ("a piece of unknown type", lambda m: field(1, field(1, b"a") + field(3, 9, wire=0)) + m),
        ("a piece without its string", lambda m: field(1, field(3, 1, wire=0)) + m),
        ("a non-UTF-8 piece", lambda m: field(1, field(1, b"\xff\xfe")) + m),
        ("a repeated trainer_spec", lambda m: m + field(2, b"")),
        ("a group wire type", lambda m: m + b"\x0b"),
    ],
)
def test_a_damaged_sentencepiece_model_stays_unknown(name: str, damage) -> None:
    assert _detected(damage(sentencepiece_model(5)))[0] is FileFormat.UNKNOWN, name


def test_text_starting_with_a_newline_is_still_text() -> None:
    assert _detected(b"\n# README\n\nhello\n")[0] is FileFormat.TEXT


def test_a_sentencepiece_model_over_max_header_bytes_is_reported_by_name() -> None:
    model, limits = sentencepiece_model(), Limits(max_header_bytes=1024)
    assert _detected(model, limits) == (FileFormat.SENTENCEPIECE, Confidence.LIKELY)
    assert _codes(model, FileFormat.SENTENCEPIECE, limits) == {"WG-SPM-002"}


def test_the_reference_sentencepiece_loader_reads_the_hand_built_model() -> None:
    spm = pytest.importorskip("sentencepiece")
    processor = spm.SentencePieceProcessor(model_proto=sentencepiece_model())
    assert processor.get_piece_size() == 3 + 256 + 300


# --- Flax msgpack -------------------------------------------------------------------------
def test_flax_weights_are_detected_and_have_no_findings() -> None:
    weights = flax_weights()
    assert _detected(weights) == (FileFormat.FLAX_MSGPACK, Confidence.CERTAIN)
    assert _codes(weights, FileFormat.FLAX_MSGPACK) == set()


def test_weights_written_by_the_msgpack_package_as_flax_does_are_detected() -> None:
    packer = pytest.importorskip("msgpack")
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    ext = packer.ExtType(1, packer.packb((array.shape, array.dtype.name, array.tobytes())))
    data = packer.packb({"params": {"kernel": ext, "scale": packer.ExtType(3, packer.packb(("float32", b"\0" * 4)))}})
    assert _detected(data)[0] is FileFormat.FLAX_MSGPACK
    assert _codes(data, FileFormat.FLAX_MSGPACK) == set()


@pytest.mark.parametrize(
    ("name", "leaf"),
    [
        ("a foreign ext type", Ext(5, msgpack([[1], "float32", b"\0" * 4]))),
        ("an object dtype", Ext(1, msgpack([[1], "object", b"\0" * 8]))),
    ],
)
def test_msgpack_with_what_flax_never_writes_is_reported(name: str, leaf: Ext) -> None:
    data = msgpack({"params": {"w": flax_array(np.zeros(2, np.float32)), "x": leaf}})
    assert _detected(data)[0] is FileFormat.FLAX_MSGPACK, name
    assert _codes(data, FileFormat.FLAX_MSGPACK) == {"WG-FLAX-002"}, name


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a buffer shorter than its shape", msgpack({"w": Ext(1, msgpack([[4], "float32", b"\0" * 8]))})),
        ("trailing bytes", flax_weights() + b"\0"),
        ("a non-string key", b"\x81\x01" + msgpack(flax_array(np.zeros(1)))),
        ("a reserved byte", b"\x81\xa1w\xc1"),
    ],
)
def test_broken_msgpack_stays_unknown_and_is_malformed_to_the_analyzer(name: str, data: bytes) -> None:
    assert _detected(data)[0] is not FileFormat.FLAX_MSGPACK, name
    assert _codes(data, FileFormat.FLAX_MSGPACK) == {"WG-FLAX-001"}, name


def test_flax_weights_over_the_value_limit_are_reported_by_name() -> None:
    assert _codes(flax_weights(), FileFormat.FLAX_MSGPACK, Limits(max_pickle_opcodes=5)) == {"WG-FLAX-003"}


def test_a_pickle_is_never_taken_for_msgpack() -> None:
    import pickle

    assert _detected(pickle.dumps({"a": 1}, protocol=2))[0] is FileFormat.PICKLE


# --- TFLite -------------------------------------------------------------------------------
def _tflite(custom: bytes | None) -> bytes:
    """Root offset, 'TFL3', Model{version: 3, operator_codes: [OperatorCode{custom_code?}]}."""
    out = struct.pack("<I4s", 16, b"TFL3")
    out += struct.pack("<HHHH", 8, 12, 4, 8)  # Model vtable at 8: fields 0 and 1
    out += struct.pack("<iII", 8, 3, 4)  # Model at 16: version 3, operator_codes -> 28
    out += struct.pack("<II", 1, 12)  # vector at 28: one table -> 44
    if custom is None:
        out += struct.pack("<HHHH", 8, 8, 0, 0)  # OperatorCode vtable at 36: no fields set
        out += struct.pack("<iI", 8, 0)
    else:
        out += struct.pack("<HHHH", 8, 8, 0, 4)  # custom_code present
        out += struct.pack("<iI", 8, 4) + struct.pack("<I", len(custom)) + custom + b"\0"
    return out + b"\0" * (-len(out) % 4)


def test_a_tflite_model_of_builtin_operators_has_no_findings() -> None:
    model = _tflite(None)
    assert _detected(model)[0] is FileFormat.TFLITE
    assert _codes(model, FileFormat.TFLITE) == set()


def test_a_tflite_flex_operator_is_reported() -> None:
    assert _codes(_tflite(b"FlexReadFile"), FileFormat.TFLITE) == {"WG-TFL-002"}


def test_a_tflite_model_with_an_offset_outside_the_file_is_malformed() -> None:
    model = bytearray(_tflite(b"MyOp"))
    model[24:28] = struct.pack("<I", 10_000)
    assert _codes(bytes(model), FileFormat.TFLITE) == {"WG-TFL-001"}


# --- images -------------------------------------------------------------------------------
def _gif() -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0) + b",\0\0\0\0\1\0\1\0\0\2\2D\1\0;"


def _webp() -> bytes:
    body = b"WEBP" + b"VP8L" + struct.pack("<I", 6) + b"\x2f\0\0\0\0\0"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _bmp() -> bytes:
    pixels = b"\0\0\xff\0"
    dib = struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(pixels), 0, 0, 54) + dib + pixels


def _ico() -> bytes:
    image = png()
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 1, 1, 0, 0, 1, 32, len(image), 22) + image


@pytest.mark.parametrize("build", [png, jpeg, _gif, _webp, _bmp, _ico])
def test_images_are_detected_and_have_no_findings(build) -> None:
    image = build()
    assert _detected(image) == (FileFormat.IMAGE, Confidence.CERTAIN)
    assert _codes(image, FileFormat.IMAGE) == set()


@pytest.mark.parametrize("build", [png, jpeg, _gif, _webp, _bmp])
def test_bytes_after_an_image_are_reported(build) -> None:
    data = build() + b"hidden payload"
    assert _detected(data)[0] is FileFormat.IMAGE
    assert _codes(data, FileFormat.IMAGE) == {"WG-IMG-002"}


def test_a_png_with_a_broken_chunk_is_malformed() -> None:
    data = png()[:8] + b"\0\0\0\x0dIH?R" + png()[16:]
    assert _detected(data) == (FileFormat.IMAGE, Confidence.LIKELY)
    assert _codes(data, FileFormat.IMAGE) == {"WG-IMG-001"}


def test_a_zip_appended_to_a_png_is_a_polyglot() -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("data.pkl", b"x")
    assert detect_bytes(png() + buf.getvalue()).polyglot
