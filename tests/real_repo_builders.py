"""Builders of Hugging Face-style model folders, encoded by hand (issue 18: real repositories pass).

Every file a BERT, GPT-2, Llama or T5 repository carries is produced here from
its format's specification, so the tests need no download and no
``sentencepiece``/``flax`` package: a SentencePiece ``ModelProto`` is written
field by field in protobuf wire format, Flax weights as msgpack with Flax's
ndarray ext type, images as minimal valid PNG and JPEG files.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

# --- protobuf (SentencePiece) ------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: bytes | int, wire: int = 2) -> bytes:
    tag = varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(value, int)
        return tag + varint(value)
    assert isinstance(value, bytes)
    return tag + (varint(len(value)) + value if wire == 2 else value)


def sentencepiece_model(pieces: int = 300) -> bytes:
    """A Llama-like ``tokenizer.model``: <unk>, <s>, </s>, byte pieces, then ordinary pieces."""
    specials = [("<unk>", 2), ("<s>", 3), ("</s>", 3)]
    byte_pieces = [(f"<0x{i:02X}>", 6) for i in range(256)]
    words = [(f"\u2581w{i}", 1) for i in range(pieces)]
    out = []
    for i, (piece, kind) in enumerate(specials + byte_pieces + words):
        body = field(1, piece.encode()) + field(2, struct.pack("<f", -float(i)), wire=5) + field(3, kind, wire=0)
        out.append(field(1, body))
    trainer = field(1, b"corpus.txt") + field(2, b"m") + field(3, 2, wire=0) + field(4, len(out), wire=0)
    trainer += field(35, 1, wire=0)  # byte_fallback, as Llama sets it
    trainer += field(40, 0, wire=0) + field(41, 1, wire=0) + field(42, 2, wire=0) + field(43, (1 << 64) - 1, wire=0)
    normalizer = field(1, b"identity") + field(3, 1, wire=0) + field(4, 0, wire=0)
    tests = field(1, field(1, b"hello") + field(2, "\u2581hello".encode()))
    return b"".join(out) + field(2, trainer) + field(3, normalizer) + field(4, tests)


# --- msgpack (Flax) -----------------------------------------------------------------------


def msgpack(value: object) -> bytes:
    """Pack the few msgpack types flax.serialization writes (maps, str, ints, floats, bin, ext)."""
    if isinstance(value, dict):
        return b"\xdf" + struct.pack(">I", len(value)) + b"".join(msgpack(k) + msgpack(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return b"\xdd" + struct.pack(">I", len(value)) + b"".join(msgpack(v) for v in value)
    if isinstance(value, str):
        raw = value.encode()
        return b"\xdb" + struct.pack(">I", len(raw)) + raw
    if isinstance(value, bytes):
        return b"\xc6" + struct.pack(">I", len(value)) + value
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        return b"\xcf" + struct.pack(">Q", value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, Ext):
        return b"\xc9" + struct.pack(">Ib", len(value.data), value.code) + value.data
    raise TypeError(type(value))


class Ext:
    def __init__(self, code: int, data: bytes) -> None:
        self.code, self.data = code, data


def flax_array(array: np.ndarray) -> Ext:
    return Ext(1, msgpack([list(array.shape), array.dtype.name, array.tobytes()]))


def flax_weights(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    tree = {
        "params": {
            "embeddings": {"word_embeddings": {"embedding": flax_array(rng.standard_normal((16, 8), np.float32))}},
            "dense": {"kernel": flax_array(rng.standard_normal((8, 8), np.float32)), "bias": flax_array(np.zeros(8))},
        },
        "step": 7,
    }
    return msgpack(tree)


# --- safetensors, images, text --------------------------------------------------------------


def safetensors(seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).standard_normal((4, 4)).astype(np.float32).tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x10\x20\x00\x30\x40")
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def jpeg() -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sos = b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app0 + sos + b"\x12\x34\x56" + b"\xff\xd9"


GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.msgpack filter=lfs diff=lfs merge=lfs -text\n"


def hf_repo(root: Path, style: str) -> Path:
    """Write a BERT-, GPT-2-, Llama- or T5-style repository folder and return it."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": style, "hidden_size": 8, "vocab_size": 300}))
    (root / "README.md").write_text(f"---\nlicense: apache-2.0\n---\n# A {style} model\n\n![diagram](diagram.png)\n")
    (root / ".gitattributes").write_text(GITATTRIBUTES)
    (root / "model.safetensors").write_bytes(safetensors())
    (root / "diagram.png").write_bytes(png())
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}
    (root / "tokenizer.json").write_text(json.dumps(tokenizer))
    (root / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    if style == "bert":
        (root / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\n")
        (root / "flax_model.msgpack").write_bytes(flax_weights())
    elif style == "gpt2":
        (root / "vocab.json").write_text(json.dumps({"<|endoftext|>": 0, "\u0120the": 1}))
        (root / "merges.txt").write_text("#version: 0.2\n\u0120 t\nh e\n")
        (root / "flax_model.msgpack").write_bytes(flax_weights(1))
        (root / "photo.jpg").write_bytes(jpeg())
    else:  # llama, t5: SentencePiece tokenizers
        (root / "tokenizer.model").write_bytes(sentencepiece_model())
        (root / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
        (root / "special_tokens_map.json").write_text(json.dumps({"unk_token": "<unk>"}))
        if style == "t5":
            (root / "spiece.model").write_bytes(sentencepiece_model(50))
            (root / "flax_model.msgpack").write_bytes(flax_weights(2))
    return root
