"""Specification of the pickle analyzer: allowlist verdicts, evidence and raw-pickle layout.

Benign inputs are real torch/numpy objects saved in memory; malicious ones are built by hand
or with a ``__reduce__`` class and pickle.dumps (never loaded). Payloads are harmless.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import pickle
import time

import numpy as np
import pytest
from pickle_builders import (
    MARKER,
    binbytes,
    blocking,
    codes_of,
    make_ctx,
    proto0_call,
    proto4_call,
    reduce_pickle,
    scan,
    su,
    torch_data_pkl,
)

from weightguard.analysis.interface import Location, PickleSettings
from weightguard.analysis.pickle_analyzer import analyze_stream
from weightguard.findings import Severity
from weightguard.sources.interface import BytesSource

torch = pytest.importorskip("torch")


def _state_dict(n: int = 100) -> dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    return {f"layer{i}.weight": torch.randn(8, 8, generator=gen) for i in range(n)}


def test_torch_state_dict_has_no_blocking_finding() -> None:
    assert blocking(scan(torch_data_pkl(_state_dict()))) == []


def test_torch_checkpoint_with_optimizer_metadata_and_odd_dtypes_has_no_blocking_finding() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    checkpoint = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "bf16": torch.ones(3, dtype=torch.bfloat16), "f8": torch.zeros(3, dtype=torch.float8_e4m3fn),
        "param": torch.nn.Parameter(torch.ones(2)), "int8": torch.arange(4, dtype=torch.int8),
        "args": argparse.Namespace(lr=0.1, name="run"), "when": dt.datetime(2024, 1, 2, 3, 4, 5),
        "step": dt.timedelta(hours=1), "counts": collections.Counter(a=2), "sizes": torch.Size([2, 3]),
        "device": torch.device("cpu"), "tags": {"a", "b"}, "rng": torch.get_rng_state(),
    }  # fmt: skip
    findings = scan(torch_data_pkl(checkpoint))
    assert blocking(findings) == [], [f.message for f in findings]


@pytest.mark.parametrize("protocol", range(6))
def test_numpy_arrays_pickled_with_any_protocol_have_no_blocking_finding(protocol: int) -> None:
    rng = np.random.default_rng(0)
    obj = {"a": rng.standard_normal((4, 5)), "i": np.arange(3, dtype=np.int16), "s": np.float32(1.5),
           "m": np.array(["2020-01-01"], dtype="M8[D]"), "t": np.float64}  # fmt: skip
    assert blocking(scan(pickle.dumps(obj, protocol=protocol))) == []


def test_os_system_reduce_is_critical_with_evidence() -> None:
    findings = scan(reduce_pickle(os.system, (MARKER,)))
    (finding,) = [f for f in findings if f.code == "WG-PKL-001"]
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["global"] == "posix.system"
    assert finding.evidence["opcode"] == "STACK_GLOBAL"
    assert finding.evidence["call"].startswith("REDUCE@")
    assert int(finding.evidence["offset"]) > 0


@pytest.mark.parametrize(
    ("module", "name"),
    [("ensurepip", "_run_pip"), ("timeit", "timeit"), ("profile", "run"), ("cProfile", "run"),
     ("pkgutil", "resolve_name"), ("pydoc", "locate"), ("uuid", "_get_command_stdout"), ("imaplib", "IMAP4_stream"),
     ("_osx_support", "_read_output"), ("idlelib.autocomplete", "AutoComplete"), ("lib2to3.main", "main"),
     ("trace", "Trace"), ("doctest", "debug_script"), ("numpy.testing._private.utils", "runstring"),
     ("numpy.f2py.f2py2e", "run_main"), ("torch.utils.collect_env", "run"),
     ("torch._inductor.codecache", "compile_file"), ("nt", "system"), ("_operator", "attrgetter"),
     ("_interpreters", "run_string"), ("weightguard.api", "scan")],
)  # fmt: skip
@pytest.mark.parametrize("build", [proto0_call, proto4_call])
def test_every_threats_gadget_blocks_as_critical(module: str, name: str, build: object) -> None:
    findings = scan(build(module, name, MARKER))  # type: ignore[operator]
    assert any(f.severity is Severity.CRITICAL for f in findings), [f.message for f in findings]


def test_unlisted_global_is_a_high_finding() -> None:
    findings = scan(proto4_call("mylib.models", "Net", "x"))
    assert [(f.code, f.severity) for f in findings] == [("WG-PKL-002", Severity.HIGH)]


def test_proto4_attribute_walk_is_critical() -> None:
    findings = scan(proto4_call("builtins", "print.__class__.__base__.__subclasses__", "x"))
    (finding,) = [f for f in findings if f.code == "WG-PKL-003"]
    assert finding.severity is Severity.CRITICAL


def test_compat_alias_of_eval_is_critical() -> None:
    assert "WG-PKL-001" in codes_of(scan(proto0_call("__builtin__", "eval", "1")))


def test_memo_desync_names_the_real_global() -> None:
    data = b"\x80\x04" + su("posix") + b"\x94" + su("system") + b"\x94" + su("collections") + su("OrderedDict")
    data += b"00h\x00h\x01\x93" + su(MARKER) + b"\x85R."
    findings = scan(data)
    assert any(f.evidence.get("global") == "posix.system" for f in findings)


def test_ext_opcode_blocks() -> None:
    assert "WG-PKL-005" in codes_of(scan(b"\x80\x02\x82\x01)R."))


def test_build_attribute_smuggling_blocks() -> None:
    data = b"\x80\x04" + su("torch._utils") + su("_rebuild_tensor") + b"\x93N}" + su("__kwdefaults__") + b"Ns\x86b."
    assert "WG-PKL-011" in codes_of(blocking(scan(data)))


@pytest.mark.parametrize(
    ("func", "rule"),
    [(pickle.loads, "WG-PKL-010"), (np.load, "WG-PKL-010")],
)
def test_nested_deserialization_is_critical_and_the_inner_payload_is_analysed(func: object, rule: str) -> None:
    inner = reduce_pickle(os.system, (MARKER,))
    findings = scan(reduce_pickle(func, (inner,)))
    assert rule in codes_of(findings)
    assert "WG-PKL-009" in codes_of(findings)
    inner_findings = [f for f in findings if "BYTES@" in f.member]
    assert any(f.evidence.get("global") == "posix.system" for f in inner_findings)


def test_torch_load_global_is_nested_deserialization() -> None:
    assert "WG-PKL-010" in codes_of(scan(proto4_call("torch", "load", "x.pt")))


def test_nested_archive_in_a_constant_is_dispatched() -> None:
    nested: list[tuple[object, Location]] = []
    zip_like = b"PK\x03\x04" + b"\x00" * 40
    scan(b"\x80\x04" + binbytes(zip_like) + b".", make_ctx(nested=nested))
    ((source, where),) = nested
    assert where.member == "BINBYTES@7"
    assert source.read_at(0, 4) == b"PK\x03\x04"


def test_broken_stream_after_payload_blocks_twice() -> None:
    findings = scan(proto0_call("os", "system", MARKER)[:-1] + b"\xff")
    assert {"WG-PKL-001", "WG-PKL-006"} <= codes_of(findings)


def test_data_after_stop_blocks() -> None:
    findings = scan(pickle.dumps({"a": 1}, protocol=4) + b"\n\x00junk")
    assert "WG-PKL-007" in codes_of(blocking(findings))


def test_stacked_pickles_are_each_analysed() -> None:
    findings = scan(pickle.dumps({"a": 1}, protocol=4) + reduce_pickle(os.system, (MARKER,)))
    assert {"WG-PKL-008", "WG-PKL-001"} <= codes_of(blocking(findings))


def test_refuse_mode_blocks_even_benign_pickles() -> None:
    findings = scan(pickle.dumps([1], protocol=4), make_ctx(settings=PickleSettings(mode="refuse")))
    assert codes_of(blocking(findings)) == {"WG-PKL-000"}


def test_policy_extra_allows_a_global_with_an_info_finding() -> None:
    ctx = make_ctx(settings=PickleSettings(extra_allowed=frozenset({"mylib.models.Config"})))
    findings = scan(proto4_call("mylib.models", "Config", "x"), ctx)
    assert blocking(findings) == []
    assert codes_of(findings) == {"WG-PKL-013"}


def test_fickling_decompiled_view_is_attached_only_when_enabled() -> None:
    data = reduce_pickle(os.system, (MARKER,))
    with_view = scan(data)
    assert any("system(" in f.evidence.get("decompiled", "") for f in with_view)
    without = scan(data, make_ctx(settings=PickleSettings(fickling_evidence=False)))
    assert not any("decompiled" in f.evidence for f in without)


def test_checkpoint_metadata_with_a_defaultdict_of_lists_has_no_blocking_finding() -> None:
    history: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
    history["loss"].extend([0.5, 0.25])
    meta = {"history": history, "counts": collections.Counter("aab"), "recent": collections.deque([1, 2])}
    for factory in (dict, set, tuple, int, float, str, bytes, bool, frozenset):
        meta[factory.__name__] = collections.defaultdict(factory)
    assert blocking(scan(pickle.dumps(meta, protocol=2))) == []


def test_a_defaultdict_factory_outside_the_allowlist_is_denied() -> None:
    findings = scan(pickle.dumps(collections.defaultdict(collections.UserList), protocol=2))
    assert [f.evidence["global"] for f in blocking(findings)] == ["collections.UserList"]


def test_fickling_evidence_is_skipped_for_streams_over_the_opcode_cap(capfd: pytest.CaptureFixture[str]) -> None:
    # 10^6 opcodes cost fickling seconds; the stream is judged without its decompiled view.
    data = b"\x80\x02" + su("os") + su("system") + b"\x93](" + b"N" * 150_000 + b"e\x85R."
    started = time.perf_counter()
    findings = scan(data)
    assert "WG-PKL-001" in codes_of(findings)
    assert not any("decompiled" in f.evidence for f in findings)
    assert time.perf_counter() - started < 5
    assert capfd.readouterr().err == ""


def test_fickling_warnings_never_reach_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # fickling prints "Warning: malformed pickle file" for a GET of an unknown memo key.
    data = b"\x80\x02" + su("os") + su("system") + b"\x93h\x07\x85R."
    findings = scan(data)
    assert "WG-PKL-001" in codes_of(findings)
    assert capfd.readouterr().err == ""


def test_fickling_evidence_is_bounded_on_memo_expansion() -> None:
    data = bytearray(b"\x80\x04" + su("os") + su("system") + b"\x93\x94]\x94")
    for level in range(1, 40):
        data += b"(h" + bytes([level]) + b"h" + bytes([level]) + b"l\x94"
    data += b"h\x00\x85R."
    started = time.perf_counter()
    findings = scan(bytes(data))
    assert "WG-PKL-001" in codes_of(findings)
    assert time.perf_counter() - started < 10


def test_analyze_stream_reports_the_stream_end_for_callers() -> None:
    data = b"xx" + pickle.dumps([1, 2], protocol=2) + b"rest"
    trace, findings = analyze_stream(BytesSource(data), 2, Location("f"), make_ctx())
    assert trace.end == len(data) - 4
    assert findings == []


def test_torch_data_pkl_walk_time_is_small() -> None:
    data = torch_data_pkl(_state_dict(100))
    started = time.perf_counter()
    findings = scan(data)
    assert blocking(findings) == []
    assert time.perf_counter() - started < 2
