"""ONNX checks on models built with the onnx package: external data, custom domains, broken protobuf."""

from __future__ import annotations

import pytest

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.findings import Finding, Severity
from weightguard.formats import header_codes as codes
from weightguard.formats.onnx import OnnxAnalyzer
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _ctx() -> ScanContext:
    return ScanContext(limits=Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))


def _scan(data: bytes) -> list[Finding]:
    return list(OnnxAnalyzer().analyze(BytesSource(data), Location("m.onnx"), _ctx()))


def _codes(data: bytes) -> set[str]:
    return {f.code for f in _scan(data)}


def _weight(name: str = "W", location: str | None = None, extra: dict[str, str] | None = None) -> TensorProto:
    weight = helper.make_tensor(name, TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None or extra:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        entries = {"location": location} if location is not None else {}
        entries |= extra or {"offset": "0", "length": "8"}
        for key, value in entries.items():
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    return weight


def _model(
    weight: TensorProto | None = None, nodes: list[onnx.NodeProto] | None = None, **kwargs: object
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes or [helper.make_node("Add", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])],
        initializer=[weight if weight is not None else _weight()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="weightguard-tests", **kwargs)


def _bytes(model: onnx.ModelProto) -> bytes:
    return bytes(model.SerializeToString())


def test_a_plain_model_has_no_findings() -> None:
    model = _model()
    onnx.checker.check_model(model)
    assert _scan(_bytes(model)) == []


def test_external_data_inside_the_model_directory_is_accepted() -> None:
    for location in ("weights.bin", "data/weights.bin", "./w.bin", "a..b.bin"):
        assert _scan(_bytes(_model(_weight(location=location)))) == [], location


@pytest.mark.parametrize(
    "location",
    ["../../etc/passwd", "/etc/passwd", "\\\\server\\share\\w.bin", "C:\\Windows\\win.ini", "data/../../x",
     "file:///etc/passwd", "https://example.invalid/w.bin", "weights\0.bin", "a\\..\\..\\b"],
)  # fmt: skip
def test_external_data_escaping_the_model_directory_is_critical(location: str) -> None:
    findings = _scan(_bytes(_model(_weight(location=location))))
    assert [f.code for f in findings] == [codes.ONNX_EXTERNAL_ESCAPE.code]
    assert findings[0].severity is Severity.CRITICAL
    assert findings[0].evidence["location"] == location


def test_escaping_external_data_is_found_in_subgraphs_and_node_attributes() -> None:
    const = helper.make_node("Constant", [], ["C"], value=_weight("C", "../../secret"))
    then_graph = helper.make_graph([const], "then", [], [helper.make_tensor_value_info("C", TensorProto.FLOAT, [2])])
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["E"])],
        "else",
        [],
        [helper.make_tensor_value_info("E", TensorProto.FLOAT, [2])],
        initializer=[_weight("Z", "/etc/shadow")],
    )
    node = helper.make_node("If", ["cond"], ["Y"], then_branch=then_graph, else_branch=else_graph)
    findings = _scan(_bytes(_model(nodes=[node])))
    assert sorted(f.evidence["location"] for f in findings) == ["../../secret", "/etc/shadow"]


def test_escaping_external_data_in_a_sparse_initializer_is_found() -> None:
    model = _model()
    sparse = helper.make_sparse_tensor(
        _weight("S", "../s.bin"), helper.make_tensor("I", TensorProto.INT64, [2], [0, 1]), [4]
    )
    model.graph.sparse_initializer.append(sparse)
    assert _codes(_bytes(model)) == {codes.ONNX_EXTERNAL_ESCAPE.code}


def test_external_data_without_a_location_is_malformed() -> None:
    assert _codes(_bytes(_model(_weight(extra={"offset": "0"})))) == {codes.ONNX_EXTERNAL_MALFORMED.code}


def test_non_numeric_offset_or_length_is_malformed() -> None:
    weight = _weight(location="w.bin", extra={"offset": "-1", "length": "8"})
    assert _codes(_bytes(_model(weight))) == {codes.ONNX_EXTERNAL_MALFORMED.code}


def test_a_repeated_location_key_is_malformed() -> None:
    weight = _weight(location="w.bin")
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../x"
    assert _codes(_bytes(_model(weight))) == {codes.ONNX_EXTERNAL_MALFORMED.code, codes.ONNX_EXTERNAL_ESCAPE.code}


def test_a_custom_domain_operator_needs_review() -> None:
    node = helper.make_node("MyOp", ["X", "W"], ["Y"], domain="com.example.ops")
    findings = _scan(_bytes(_model(nodes=[node])))
    assert [f.code for f in findings] == [codes.ONNX_CUSTOM_DOMAIN.code]
    assert (findings[0].evidence["domain"], findings[0].evidence["op_type"]) == ("com.example.ops", "MyOp")


def test_onnx_runtime_contrib_operators_are_only_informational() -> None:
    node = helper.make_node("FusedMatMul", ["X", "W"], ["Y"], domain="com.microsoft")
    findings = _scan(_bytes(_model(nodes=[node])))
    assert [(f.code, f.severity) for f in findings] == [(codes.ONNX_VENDOR_DOMAIN.code, Severity.INFO)]


def test_standard_domains_are_not_flagged() -> None:
    nodes = [
        helper.make_node("Add", ["X", "W"], ["T"], domain="ai.onnx"),
        helper.make_node("Normalizer", ["T"], ["Y"], domain="ai.onnx.ml", norm="L2"),
    ]
    assert _scan(_bytes(_model(nodes=nodes))) == []


def test_a_node_calling_a_local_function_is_not_a_custom_operator() -> None:
    body = [helper.make_node("Add", ["a", "b"], ["c"])]
    function = helper.make_function("local.fn", "AddTwo", ["a", "b"], ["c"], body, [helper.make_opsetid("", 17)])
    node = helper.make_node("AddTwo", ["X", "W"], ["Y"], domain="local.fn")
    model = _model(nodes=[node], functions=[function])
    assert _scan(_bytes(model)) == []


def test_a_custom_operator_inside_a_local_function_is_flagged() -> None:
    body = [helper.make_node("Evil", ["a", "b"], ["c"], domain="com.example")]
    function = helper.make_function("local.fn", "Wrap", ["a", "b"], ["c"], body, [helper.make_opsetid("", 17)])
    node = helper.make_node("Wrap", ["X", "W"], ["Y"], domain="local.fn")
    assert _codes(_bytes(_model(nodes=[node], functions=[function]))) == {codes.ONNX_CUSTOM_DOMAIN.code}


@pytest.mark.parametrize(
    "data",
    [
        b"\x08",  # truncated varint
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # varint over 10 bytes
        b"\x08\x08\x3a\x10\x00",  # graph field of 16 bytes, 1 present
        b"\x08\x08\x0b",  # group (wire type 3)
        b"\x08\x08\x00\x00",  # field number 0
        b"\x08\x08\x09\x00\x00",  # truncated fixed64
    ],
)
def test_broken_wire_format_is_malformed(data: bytes) -> None:
    assert _codes(data) == {codes.ONNX_MALFORMED.code}


def test_truncating_a_real_model_never_raises() -> None:
    data = _bytes(_model(_weight(location="w.bin")))
    for cut in range(len(data)):
        _scan(data[:cut])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_graphs(levels: int) -> bytes:
    # The onnx package itself refuses to build this (upb's depth limit), so write the wire bytes:
    # ModelProto.graph -> GraphProto.node -> NodeProto.attribute -> AttributeProto.g -> ...
    graph = b""
    for _ in range(levels):
        graph = _len_field(1, _len_field(5, _len_field(6, graph)))
    return b"\x08\x08" + _len_field(7, graph)


def test_graphs_nested_past_the_protobuf_limit_are_flagged() -> None:
    assert _codes(_nested_graphs(20)) == set()
    assert _codes(_nested_graphs(40)) == {codes.ONNX_TOO_DEEP.code}
