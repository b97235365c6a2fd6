"""Detection probes for the inert formats of model repositories (issue 18: real repositories pass).

SentencePiece models, Flax msgpack weights, TFLite flatbuffers and images are
recognised from their bytes, never their names: each probe runs the same
structural check its analyzer relies on, so a ``tokenizer.model`` that is a
pickle is detected as a pickle, and bytes that merely start like a format stay
unknown (fail closed). :data:`ASSET_PROBES` is appended to the probe tuple of
:func:`weightguard.formats.detect.detect`; they live here to keep that module
under the size limit and to keep their logic beside the validators.

Not handled here: ranking (``detect`` does it) and findings (the analyzers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from weightguard.formats import flax_msgpack, images, sentencepiece, tflite
from weightguard.formats.interface import Confidence, FileFormat
from weightguard.limits import Limits
from weightguard.sources.interface import ByteSource

_FLAX_FIRST = frozenset({*range(0x81, 0x90), 0xDE, 0xDF})  # a non-empty msgpack map
_FLAX_DETECT_VALUES = 1_000_000  # detection walks at most this many values; the analyzer walks to the limit


class _Sink(Protocol):
    def add(self, where: int, fmt: FileFormat, confidence: Confidence, evidence: str) -> None: ...


Probe = Callable[[ByteSource, bytes, Limits, _Sink], None]


def sentencepiece_probe(source: ByteSource, head: bytes, limits: Limits, found: _Sink) -> None:
    """A whole, strictly walked ``ModelProto`` (or a well-formed first piece of one too large to walk)."""
    if head[:1] != b"\x0a" or not sentencepiece.first_piece_ok(head):
        return  # cheap gate first: text starting with a newline is not read whole
    if source.size > limits.max_header_bytes:
        evidence = f"first SentencePiece piece well formed; {source.size} bytes over max_header_bytes"
        found.add(0, FileFormat.SENTENCEPIECE, Confidence.LIKELY, evidence)
        return
    data = head if len(head) >= source.size else source.read_at(0, source.size)
    try:
        summary = sentencepiece.check_model_proto(data)
    except sentencepiece.SentencePieceError:
        return
    found.add(0, FileFormat.SENTENCEPIECE, Confidence.CERTAIN, summary)


def flax_probe(source: ByteSource, head: bytes, limits: Limits, found: _Sink) -> None:
    """One msgpack map holding at least one Flax array, ending exactly at the end of the file."""
    if not head or head[0] not in _FLAX_FIRST:
        return
    try:
        summary = flax_msgpack.check_state_dict(source, min(_FLAX_DETECT_VALUES, limits.max_pickle_opcodes))
    except flax_msgpack.FlaxLimitError as exc:
        found.add(0, FileFormat.FLAX_MSGPACK, Confidence.LIKELY, f"msgpack map, not walked to the end: {exc.message}")
        return
    except flax_msgpack.FlaxForeignError as exc:
        # Shaped like Flax weights but with a foreign ext or dtype: analysed, so it is reported by name.
        found.add(0, FileFormat.FLAX_MSGPACK, Confidence.LIKELY, f"msgpack map with {exc.message}")
        return
    except flax_msgpack.FlaxError:
        return
    if " 0 arrays" not in summary:
        found.add(0, FileFormat.FLAX_MSGPACK, Confidence.CERTAIN, summary)


def tflite_probe(source: ByteSource, head: bytes, limits: Limits, found: _Sink) -> None:
    """The ``TFL3`` file identifier at offset 4 and a root offset inside the file."""
    del limits
    if head[4:8] != tflite.TFLITE_IDENTIFIER or len(head) < 8:
        return
    root = int.from_bytes(head[:4], "little")
    if root % 4 == 0 and 8 <= root < source.size:
        found.add(0, FileFormat.TFLITE, Confidence.LIKELY, f"TFL3 identifier, root table at {root}")


def image_probe(source: ByteSource, head: bytes, limits: Limits, found: _Sink) -> None:
    """An image magic number and an end that the structure walk finds inside the file."""
    del limits
    kind = images.image_kind(head)
    if kind is None:
        return
    try:
        end = images.image_end(source, kind)
    except images.ImageError as exc:
        if kind in ("png", "jpeg", "gif", "webp"):  # unambiguous magic: analysed, so the breakage is reported
            found.add(0, FileFormat.IMAGE, Confidence.LIKELY, f"{kind} magic; {exc.message}")
        return
    found.add(0, FileFormat.IMAGE, Confidence.CERTAIN, f"{kind} image of {end} bytes")


ASSET_PROBES: tuple[Probe, ...] = (sentencepiece_probe, flax_probe, tflite_probe, image_probe)
