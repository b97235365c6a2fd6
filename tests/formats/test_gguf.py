"""GGUF header validation, on files built by a tiny writer that follows ggml's docs/gguf.md."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.findings import Finding, RuleKind
from weightguard.formats import header_codes as codes
from weightguard.formats.gguf import GgufAnalyzer
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
T_F32, T_F16, T_Q4_0, T_Q8_0 = 0, 1, 2, 8


@dataclass
class Writer:
    """Builds GGUF bytes; every field can be set to a hostile value."""

    version: int = 3
    alignment: int = 32
    kv: list[bytes] = field(default_factory=list)
    infos: list[bytes] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    n_kv: int | None = None
    n_tensors: int | None = None

    def count(self, n: int) -> bytes:
        return struct.pack("<Q" if self.version >= 2 else "<I", n)

    def string(self, text: str | bytes) -> bytes:
        raw = text.encode() if isinstance(text, str) else text
        return self.count(len(raw)) + raw

    def value(self, vtype: int, value: object) -> bytes:
        fixed = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B", U64: "Q"}
        fixed |= {I64: "q", F64: "d"}
        if vtype in fixed:
            return struct.pack("<" + fixed[vtype], value)
        if vtype == STRING:
            assert isinstance(value, str | bytes)
            return self.string(value)
        assert vtype == ARRAY
        assert isinstance(value, tuple)
        etype, items = value
        return struct.pack("<I", etype) + self.count(len(items)) + b"".join(self.value(etype, v) for v in items)

    def add_kv(self, key: str, vtype: int, value: object) -> Writer:
        self.kv.append(self.string(key) + struct.pack("<I", vtype) + self.value(vtype, value))
        return self

    def add_raw_kv(self, raw: bytes) -> Writer:
        self.kv.append(raw)
        return self

    def add_tensor(
        self, name: str, dims: Sequence[int], ggml_type: int = T_F32, *, nbytes: int | None = None,
        offset: int | None = None,
    ) -> Writer:  # fmt: skip
        size = nbytes if nbytes is not None else _nbytes(dims, ggml_type)
        at = offset if offset is not None else sum(len(b) for b in self.blobs)
        dim_bytes = b"".join(self.count(d) if self.version >= 2 else struct.pack("<I", d) for d in dims)
        self.infos.append(
            self.string(name) + struct.pack("<I", len(dims)) + dim_bytes + struct.pack("<IQ", ggml_type, at)
        )
        blob = bytes(range(256)) * (size // 256) + bytes(size % 256)
        self.blobs.append(blob + bytes(-len(blob) % self.alignment))
        return self

    def build(self, trailing: bytes = b"") -> bytes:
        n_kv = len(self.kv) if self.n_kv is None else self.n_kv
        n_tensors = len(self.infos) if self.n_tensors is None else self.n_tensors
        head = b"GGUF" + struct.pack("<I", self.version) + self.count(n_tensors) + self.count(n_kv)
        out = head + b"".join(self.kv) + b"".join(self.infos)
        return out + bytes(-len(out) % self.alignment) + b"".join(self.blobs) + trailing


def _nbytes(dims: Sequence[int], ggml_type: int) -> int:
    block, size = {T_F32: (1, 4), T_F16: (1, 2), T_Q4_0: (32, 18), T_Q8_0: (32, 34)}[ggml_type]
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def _model(version: int = 3) -> Writer:
    w = Writer(version=version)
    w.add_kv("general.architecture", STRING, "llama").add_kv("general.alignment", U32, 32)
    w.add_kv("llama.context_length", U32, 2048).add_kv("general.file_type", U32, 1)
    w.add_kv("llama.rope.freq_base", F32, 10000.0).add_kv("tokenizer.ggml.add_bos_token", BOOL, 1)
    w.add_kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["<s>", "</s>", "a", "b"]))
    w.add_kv("tokenizer.ggml.scores", ARRAY, (F32, [0.0, 0.0, -1.0, -2.0]))
    w.add_kv("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3, 1, 1]))
    w.add_kv(
        "tokenizer.chat_template", STRING, "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}"
    )
    w.add_tensor("token_embd.weight", [64, 4], T_Q8_0)
    w.add_tensor("output_norm.weight", [4], T_F32)
    w.add_tensor("output.weight", [32, 4], T_Q4_0)
    return w


def _ctx(limits: Limits | None = None) -> ScanContext:
    return ScanContext(limits=limits or Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))


def _scan(data: bytes, limits: Limits | None = None) -> list[Finding]:
    return list(GgufAnalyzer().analyze(BytesSource(data), Location("m.gguf"), _ctx(limits)))


def _codes(data: bytes, limits: Limits | None = None) -> set[str]:
    return {f.code for f in _scan(data, limits)}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_well_formed_gguf_of_every_version_has_no_findings(version: int) -> None:
    assert _scan(_model(version).build()) == []


def test_a_gguf_without_tensors_or_metadata_has_no_findings() -> None:
    assert _scan(Writer().build()) == []


def test_nested_arrays_within_the_depth_limit_are_accepted() -> None:
    data = _model().add_kv("x.nested", ARRAY, (ARRAY, [(U8, [1, 2]), (U8, [3])])).build()
    assert _scan(data) == []


@pytest.mark.parametrize("data", [b"", b"GGU", b"GGUF\x03\x00", b"GGML\x03\x00\x00\x00" + bytes(16)])
def test_a_missing_magic_or_version_is_a_bad_header(data: bytes) -> None:
    assert _codes(data) == {codes.GGUF_BAD_HEADER.code}


@pytest.mark.parametrize("version", [0, 4, 0x03000000])
def test_an_unsupported_version_is_a_bad_header(version: int) -> None:
    data = b"GGUF" + struct.pack("<IQQ", version, 0, 0)
    assert _codes(data) == {codes.GGUF_BAD_HEADER.code}


def test_counts_that_cannot_fit_in_the_file_are_refused_before_parsing() -> None:
    w = _model()
    w.n_kv = 2**63
    assert _codes(w.build()) == {codes.GGUF_BAD_HEADER.code}
    w = _model()
    w.n_tensors = 10**12
    assert _codes(w.build()) == {codes.GGUF_BAD_HEADER.code}


def test_a_string_longer_than_the_file_is_truncated() -> None:
    w = Writer()
    w.add_raw_kv(w.count(2**40) + b"general.name")
    assert _codes(w.build()) == {codes.GGUF_TRUNCATED.code}


def test_an_array_longer_than_the_file_is_truncated() -> None:
    w = Writer()
    w.add_raw_kv(w.string("a") + struct.pack("<I", ARRAY) + struct.pack("<I", STRING) + w.count(2**50))
    assert _codes(w.build()) == {codes.GGUF_TRUNCATED.code}
    w = Writer()
    w.add_raw_kv(w.string("a") + struct.pack("<I", ARRAY) + struct.pack("<I", U64) + w.count(2**50))
    assert _codes(w.build()) == {codes.GGUF_TRUNCATED.code}


def test_metadata_beyond_max_header_bytes_is_an_error() -> None:
    data = _model().add_kv("big", STRING, "x" * 5000).build()
    findings = _scan(data, Limits(max_header_bytes=4096))
    assert [f.code for f in findings] == [codes.GGUF_HEADER_TOO_LARGE.code]
    assert findings[0].kind is RuleKind.ERROR
    assert _scan(data, Limits(max_header_bytes=len(data))) == []


@pytest.mark.parametrize(
    "raw_value",
    [
        struct.pack("<I", 13) + b"\0" * 8,  # unknown value type
        struct.pack("<I", STRING) + struct.pack("<Q", 2) + b"\xff\xfe",  # not UTF-8
        struct.pack("<I", BOOL) + b"\x02",  # bool that is neither 0 nor 1
        struct.pack("<II", ARRAY, 99) + struct.pack("<Q", 1) + b"\0" * 8,  # unknown element type
        struct.pack("<II", ARRAY, BOOL) + struct.pack("<Q", 3) + b"\x00\x01\x07",
    ],
)
def test_an_invalid_metadata_value_is_flagged(raw_value: bytes) -> None:
    w = Writer()
    w.add_raw_kv(w.string("k") + raw_value)
    assert codes.GGUF_BAD_VALUE.code in _codes(w.build())


def test_arrays_nested_deeper_than_the_limit_are_flagged() -> None:
    value: tuple[int, list[object]] = (U8, [1])
    for _ in range(10):
        value = (ARRAY, [value])
    data = Writer().add_kv("deep", ARRAY, value).build()
    assert _codes(data) == {codes.GGUF_BAD_VALUE.code}
    assert _codes(data, Limits(max_nesting_depth=16)) == set()


def test_a_duplicate_metadata_key_or_tensor_name_is_flagged() -> None:
    assert _codes(_model().add_kv("general.architecture", STRING, "gpt2").build()) == {codes.GGUF_DUPLICATE.code}
    assert _codes(_model().add_tensor("output.weight", [4]).build()) == {codes.GGUF_DUPLICATE.code}


@pytest.mark.parametrize(("vtype", "value"), [(U32, 0), (U32, 48), (U64, 32), (STRING, "32")])
def test_an_alignment_that_is_not_a_uint32_power_of_two_is_flagged(vtype: int, value: object) -> None:
    data = Writer().add_kv("general.alignment", vtype, value).add_tensor("t", [4]).build()
    assert codes.GGUF_BAD_ALIGNMENT.code in _codes(data)


def test_a_custom_power_of_two_alignment_is_honoured() -> None:
    w = Writer(alignment=64)
    w.add_kv("general.alignment", U32, 64).add_tensor("a", [3]).add_tensor("b", [5])
    assert _scan(w.build()) == []


def test_too_many_dimensions_is_a_bad_tensor() -> None:
    assert _codes(Writer().add_tensor("t", [1, 1, 1, 1, 2], nbytes=8).build()) == {codes.GGUF_BAD_TENSOR.code}


@pytest.mark.parametrize("ggml_type", [4, 5, 31, 42, 2**31])
def test_an_unknown_or_removed_ggml_type_is_a_bad_tensor(ggml_type: int) -> None:
    assert _codes(Writer().add_tensor("t", [32], ggml_type, nbytes=32).build()) == {codes.GGUF_BAD_TENSOR.code}


def test_a_row_that_is_not_whole_blocks_or_an_overflowing_size_is_a_bad_tensor() -> None:
    assert _codes(Writer().add_tensor("t", [33], T_Q8_0, nbytes=34).build()) == {codes.GGUF_BAD_TENSOR.code}
    assert _codes(Writer().add_tensor("t", [2**32, 2**32], nbytes=4).build()) == {codes.GGUF_BAD_TENSOR.code}


def test_a_misaligned_tensor_offset_is_flagged() -> None:
    data = Writer().add_tensor("a", [1]).add_tensor("b", [4], offset=36).build()
    assert codes.GGUF_MISALIGNED.code in _codes(data)


def test_a_tensor_past_the_end_of_file_is_flagged() -> None:
    data = Writer().add_tensor("a", [4]).build()
    assert _codes(data[:-20]) == {codes.GGUF_OUT_OF_BOUNDS.code}
    assert _codes(Writer().add_tensor("a", [4], offset=2**40).build()) >= {codes.GGUF_OUT_OF_BOUNDS.code}


def test_overlapping_tensors_are_flagged() -> None:
    data = Writer().add_tensor("a", [16]).add_tensor("b", [16], offset=32).build()
    assert codes.GGUF_OVERLAP.code in _codes(data)
    data = Writer().add_tensor("a", [16]).add_tensor("b", [16], offset=0).build()
    assert codes.GGUF_OVERLAP.code in _codes(data)


def test_unreferenced_bytes_between_tensors_or_at_the_end_are_flagged() -> None:
    gap = Writer().add_tensor("a", [4]).add_tensor("b", [4], offset=64).build(trailing=bytes(32))
    assert _codes(gap) == {codes.GGUF_GAP.code}
    assert _codes(_model().build(trailing=b"\x80\x04hidden")) == {codes.GGUF_GAP.code}
    assert _codes(Writer().build(trailing=bytes(64))) == {codes.GGUF_GAP.code}


def test_a_file_that_ends_right_after_the_last_tensor_without_padding_is_accepted() -> None:
    data = Writer().add_tensor("a", [3]).build()
    assert _scan(data[: len(data) - 20]) == []


@pytest.mark.parametrize(
    "template",
    [
        # CVE-2024-34359 proof of concept shape (harmless command).
        "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler|attr('_' * 2 + 'init' + '_' * 2) }}",
        "{{ lipsum['\\x5f\\x5fglobals\\x5f\\x5f'] }}",
    ],
)
def test_a_chat_template_reaching_python_internals_is_critical(template: str) -> None:
    findings = _scan(Writer().add_kv("tokenizer.chat_template", STRING, template).build())
    assert [f.code for f in findings] == [codes.GGUF_TEMPLATE_INJECTION.code]
    assert findings[0].evidence["key"] == "tokenizer.chat_template"


def test_named_chat_templates_are_checked_too() -> None:
    w = Writer().add_kv("tokenizer.chat_template.tool_use", STRING, "{{ x.__class__ }}")
    w.add_kv("tokenizer.chat_templates", ARRAY, (STRING, ["ok", "{{ y.__globals__ }}"]))
    findings = _scan(w.build())
    assert {f.evidence["key"] for f in findings} == {"tokenizer.chat_template.tool_use", "tokenizer.chat_templates[1]"}


def test_ordinary_chat_templates_are_not_flagged() -> None:
    # Shapes of real templates: namespace(), loop variables, raise_exception, string filters.
    template = (
        "{% set ns = namespace(system='') %}{% for message in messages %}"
        "{% if message['role'] == 'system' %}{% set ns.system = message['content'] | trim %}"
        "{% elif loop.index0 % 2 == 0 %}{{ '<|user|>' + message['content'] + eos_token }}"
        "{% else %}{{ raise_exception('roles must alternate') }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    )
    assert _scan(Writer().add_kv("tokenizer.chat_template", STRING, template).build()) == []


def test_strings_outside_chat_templates_are_not_searched() -> None:
    data = Writer().add_kv("general.description", STRING, "uses __init__ in Python").build()
    assert _scan(data) == []


def test_random_truncations_never_raise() -> None:
    data = _model().build()
    for cut in range(0, len(data) - 32, 7):  # the last 24 bytes are the final tensor's padding
        findings = _scan(data[:cut])
        assert findings, cut
