"""Specification of the bounded opcode walker (weightguard.analysis.opcodes).

Streams are built by hand or with pickle.dumps; nothing is ever loaded.
"""

from __future__ import annotations

import collections
import datetime as dt
import pickle
import pickletools
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pickle_builders import binbytes, make_ctx, names, proto0_call, proto4_call, su, walk

from weightguard.analysis.opcodes import OPCODE_NAMES, AnomalyKind, walk_pickle
from weightguard.errors import LimitExceeded
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource

BENIGN = {"a": [1, 2.5, (3, "x"), None, True], "b": b"\x00" * 20, "o": collections.OrderedDict(k={1, 2}),
          "f": frozenset({1}), "c": 1 + 2j, "big": 2**100, "t": dt.timedelta(days=1)}  # fmt: skip


def kinds(data: bytes) -> set[AnomalyKind]:
    return {a.kind for a in walk(data).anomalies}


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_walks_a_benign_object_completely(protocol: int) -> None:
    trace = walk(pickle.dumps(BENIGN, protocol=protocol))
    assert trace.complete
    assert trace.stopped
    assert trace.anomalies == ()
    assert trace.protocol == protocol
    assert {"collections.OrderedDict", "datetime.timedelta"} <= names(trace)


def test_opcode_table_covers_every_opcode_pickletools_knows() -> None:
    assert set(OPCODE_NAMES) == {op.code.encode("latin-1")[0] for op in pickletools.opcodes}
    assert all(OPCODE_NAMES[op.code.encode("latin-1")[0]] == op.name for op in pickletools.opcodes)


def test_protocol_0_without_proto_opcode_reports_global_and_call() -> None:
    trace = walk(proto0_call("os", "system", "echo"))
    assert trace.protocol == 0
    assert [(c.callee.name, c.opcode) for c in trace.calls] == [("os.system", "REDUCE")]
    assert trace.globals[0].offset == 0
    assert trace.globals[0].opcode == "GLOBAL"


def test_stack_global_built_from_memo_is_resolved() -> None:
    # picklescan #22 / GHSA-9gvj-pp9x-gcfr: strings are memoized, decoys pushed, the real names fetched back.
    data = (b"\x80\x04" + su("posix") + b"\x94" + su("system") + b"\x94" + su("builtins") + su("len") + b"00"
            + b"h\x00h\x01\x93" + su("x") + b"\x85R.")  # fmt: skip
    trace = walk(data)
    assert names(trace) == {"posix.system"}
    assert trace.calls[0].callee.name == "posix.system"
    assert trace.complete


def test_protocol_0_put_and_get_feed_the_same_resolution() -> None:
    data = b"\x80\x04Vposix\np0\n0Vsystem\np1\n0g0\ng1\n\x93(S'x'\ntR."
    assert names(walk(data)) == {"posix.system"}


def test_stack_global_with_computed_operand_is_a_non_constant_anomaly() -> None:
    data = b"\x80\x04" + proto4_call("builtins", "str", "os")[2:-1] + su("system") + b"\x93)R."
    trace = walk(data)
    assert AnomalyKind.NONCONST_GLOBAL in {a.kind for a in trace.anomalies}
    assert not trace.complete


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [("__builtin__", "eval", "builtins.eval"), ("copy_reg", "_reconstructor", "copyreg._reconstructor"),
     ("cPickle", "loads", "pickle.loads"), ("UserDict", "UserDict", "collections.UserDict"),
     ("exceptions", "Exception", "builtins.Exception")],
)  # fmt: skip
def test_compat_pickle_names_are_remapped_before_recording(module: str, name: str, expected: str) -> None:
    assert names(walk(proto0_call(module, name, "x"))) == {expected}


def test_proto4_dotted_name_is_recorded_verbatim() -> None:
    trace = walk(proto4_call("builtins", "print.__class__.__base__.__subclasses__", "x"))
    assert trace.globals[0].module == "builtins"
    assert trace.globals[0].qualname == "print.__class__.__base__.__subclasses__"


@pytest.mark.parametrize("ext", [b"\x82\x05", b"\x83\x05\x00", b"\x84\x05\x00\x00\x00"])
def test_extension_opcodes_are_anomalies(ext: bytes) -> None:
    assert AnomalyKind.EXTENSION in kinds(b"\x80\x02" + ext + b")R.")


def test_build_on_a_global_itself_is_attribute_smuggling() -> None:
    # BUILD's slotstate would setattr on the function object (modelscan #85).
    data = b"\x80\x04" + su("torch._utils") + su("_rebuild_tensor") + b"\x93N}" + su("__code__") + b"Ns\x86b."
    assert AnomalyKind.GLOBAL_MUTATION in kinds(data)


def test_setitem_on_a_global_is_attribute_smuggling() -> None:
    assert AnomalyKind.GLOBAL_MUTATION in kinds(b"ccollections\nOrderedDict\nS'k'\nS'v'\ns.")


def test_calling_a_non_global_value_is_an_indirect_call() -> None:
    # REDUCE on the result of a call: the callee is only known at load time.
    data = proto4_call("builtins", "str", "x")[:-1] + b")R."
    assert AnomalyKind.INDIRECT_CALL in kinds(data)


def test_a_defaultdict_with_a_named_factory_walks_cleanly() -> None:
    trace = walk(pickle.dumps(collections.defaultdict(list, {"a": [1.0]}), protocol=2))
    assert trace.complete
    assert {g.name for g in trace.globals} == {"collections.defaultdict", "builtins.list"}


def test_a_defaultdict_whose_factory_is_not_a_named_global_is_an_indirect_call() -> None:
    # THREATS 5.1: the factory runs for every missing key after loading, so it must be a named global.
    data = b"ccollections\ndefaultdict\n(ccollections\nOrderedDict\n)RtR."
    (anomaly,) = walk(data).anomalies
    assert anomaly.kind is AnomalyKind.INDIRECT_CALL
    assert "factory is <collections.OrderedDict(...)>" in anomaly.detail


def test_build_on_a_defaultdict_is_an_indirect_call_even_with_a_named_factory() -> None:
    # BUILD's slot state can set default_factory; defaultdict's own pickles never use BUILD.
    data = b"ccollections\ndefaultdict\n)R(N(S'default_factory'\ncbuiltins\nlist\ndtb."
    assert [a.kind for a in walk(data).anomalies] == [AnomalyKind.INDIRECT_CALL]


def test_newobj_of_a_defaultdict_leaves_its_factory_unset() -> None:
    data = b"\x80\x02ccollections\ndefaultdict\ncbuiltins\nlist\n\x85\x81."
    assert walk(data).anomalies == ()


@pytest.mark.parametrize(
    ("data", "opcode"),
    [(b"(S'x'\nios\nsystem\n.", "INST"), (b"(cos\nsystem\nS'x'\no.", "OBJ"),
     (b"\x80\x02cos\nsystem\n)\x81.", "NEWOBJ"), (b"\x80\x04cos\nsystem\n)}\x92.", "NEWOBJ_EX")],
)  # fmt: skip
def test_every_call_opcode_records_its_callee(data: bytes, opcode: str) -> None:
    trace = walk(data)
    assert [(c.callee.name, c.opcode) for c in trace.calls] == [("os.system", opcode)]
    assert trace.complete


def test_persistent_ids_are_stringified() -> None:
    data = b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000K\x04tQ."
    assert walk(data).persistent_ids == (("storage", "torch.FloatStorage", "0", "4"),)


def test_first_value_is_the_legacy_torch_magic_number() -> None:
    magic = 0x1950A86A20F9469CFC6C
    assert walk(pickle.dumps(magic, protocol=2)).first_value == magic


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"\x80\x04K", AnomalyKind.TRUNCATED), (b"\x80\x04K\x01", AnomalyKind.MISSING_STOP),
     (b"\x80\x04\xff.", AnomalyKind.INVALID_OPCODE), (b"\x80\x04R.", AnomalyKind.STACK_UNDERFLOW),
     (b"\x80\x04h\x07.", AnomalyKind.MEMO_MISS), (b"\x80\x09N.", AnomalyKind.UNKNOWN_PROTOCOL),
     (b"\x80\x05\x97.", AnomalyKind.OUT_OF_BAND),
     (b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.", AnomalyKind.TRUNCATED),
     (b"\x80\x04e.", AnomalyKind.STACK_UNDERFLOW), (b"S'unquoted\n.", AnomalyKind.BAD_ARGUMENT),
     (b"X\x03\x00\x00\x00\xff\xfe\xfd.", AnomalyKind.BAD_ARGUMENT), (b"\x80\x04]N\x8c", AnomalyKind.TRUNCATED),
     (b"\x80\x04}Na.", AnomalyKind.BAD_ARGUMENT)],
)  # fmt: skip
def test_malformed_streams_become_anomalies_not_exceptions(data: bytes, kind: AnomalyKind) -> None:
    trace = walk(data)
    assert kind in {a.kind for a in trace.anomalies}
    assert not trace.complete


def test_values_left_on_the_stack_are_reported_but_do_not_make_the_stream_incomplete() -> None:
    trace = walk(b"\x80\x04NN.")
    assert [a.kind for a in trace.anomalies] == [AnomalyKind.UNUSED_VALUES]
    assert trace.complete


def test_payload_before_the_break_is_still_recorded() -> None:
    # nullifAI: the call runs before the loader hits the invalid byte.
    trace = walk(proto0_call("os", "system", "x")[:-1] + b"\xff\xff")
    assert names(trace) == {"os.system"}
    assert AnomalyKind.INVALID_OPCODE in {a.kind for a in trace.anomalies}


def test_end_is_just_after_stop_and_trailing_bytes_are_not_walked() -> None:
    data = pickle.dumps([1, 2], protocol=4)
    trace = walk(data + b"garbage")
    assert trace.end == len(data)
    assert trace.stopped


def test_walk_starts_at_an_offset() -> None:
    data = b"junk" + pickle.dumps({"x": 1}, protocol=2)
    trace = walk_pickle(BytesSource(data), 4, make_ctx())
    assert trace.start == 4
    assert trace.end == len(data)
    assert trace.complete


def test_opcode_limit_raises() -> None:
    with pytest.raises(LimitExceeded) as info:
        walk(b"\x80\x04" + b"N0" * 100 + b"N.", make_ctx(Limits(max_pickle_opcodes=50)))
    assert info.value.resource == "max_pickle_opcodes"


def test_memo_limit_raises() -> None:
    with pytest.raises(LimitExceeded) as info:
        walk(b"\x80\x04N" + b"\x94" * 20 + b".", make_ctx(Limits(max_memo_entries=10)))
    assert info.value.resource == "max_memo_entries"


def test_stream_byte_limit_raises_for_opcodes_and_for_large_constants() -> None:
    for data in (b"\x80\x04" + b"N0" * 600 + b"N.", b"\x80\x04" + binbytes(b"x" * 2000) + b"."):
        with pytest.raises(LimitExceeded) as info:
            walk(data, make_ctx(Limits(max_pickle_bytes=1000)))
        assert info.value.resource == "max_pickle_bytes"


def test_time_budget_is_checked_while_walking() -> None:
    ticks = iter(range(10**9))
    ctx = make_ctx(clock=lambda: float(next(ticks)), deadline=3.0)
    with pytest.raises(LimitExceeded) as info:
        walk(b"\x80\x04" + b"N0" * 50_000 + b"N.", ctx)
    assert info.value.resource == "max_seconds_per_file"


class CountingSource:
    """A ByteSource that counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        self.inner = BytesSource(data)
        self.read = 0

    @property
    def size(self) -> int:
        return self.inner.size

    def read_at(self, offset: int, length: int) -> bytes:
        out = self.inner.read_at(offset, length)
        self.read += len(out)
        return out


def test_large_bytes_constants_are_skipped_without_reading_them() -> None:
    payload = b"\x00" * (64 << 20)
    source = CountingSource(b"\x80\x04\x8e" + struct.pack("<Q", len(payload)) + payload + b".")
    trace = walk_pickle(source, 0, make_ctx())
    assert trace.complete
    assert source.read < (4 << 20)


def test_a_million_opcodes_walk_in_bounded_time() -> None:
    data = b"\x80\x04]\x94(" + b"K\x01" * 1_000_000 + b"e."
    started = time.perf_counter()
    trace = walk(data)
    assert trace.complete
    assert trace.opcodes == 1_000_006
    assert time.perf_counter() - started < 20  # measured ~0.7 s; generous for loaded CI machines


def test_billion_laughs_memo_expansion_costs_linear_time() -> None:
    # Each level is a list of 10 references to the previous one: 10**60 leaves if materialised.
    data = bytearray(b"\x80\x04]\x94")
    for level in range(60):
        data += b"(" + b"h" + bytes([level]) + b"" + (b"h" + bytes([level])) * 9 + b"l\x94"
    data += b"."
    started = time.perf_counter()
    trace = walk(bytes(data))
    assert trace.complete
    assert time.perf_counter() - started < 5


def test_embedded_pickle_and_zip_constants_are_reported() -> None:
    inner = pickle.dumps([1, 2, 3], protocol=4)
    data = b"\x80\x04" + binbytes(inner) + binbytes(b"PK\x03\x04" + b"\x00" * 30) + su("short") + b"\x87."
    blobs = walk(data).embedded
    assert [(b.pickle_like, b.length) for b in blobs] == [(True, len(inner)), (False, 34)]


def test_embedded_pickle_in_a_str_constant_keeps_its_latin1_bytes() -> None:
    inner = pickle.dumps({"k": 1}, protocol=2)
    data = pickle.dumps(inner.decode("latin-1"), protocol=2)
    (blob,) = walk(data).embedded
    assert blob.data == inner


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    trace = walk(data)
    assert trace.end <= len(data)
