"""HDF5 checks: Keras model_config in root attributes, external references, the no-h5py fallback."""

from __future__ import annotations

import base64
import io
import json
import marshal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding, RuleKind
from weightguard.formats import header_codes as codes
from weightguard.formats.hdf5 import HDF5Analyzer
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource

h5py = pytest.importorskip("h5py")


def _ctx(limits: Limits | None = None) -> ScanContext:
    return ScanContext(limits=limits or Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))


def _h5(populate: Callable[[Any], None]) -> bytes:
    out = io.BytesIO()
    with h5py.File(out, "w") as h5:
        populate(h5)
    return out.getvalue()


def _scan(data: bytes, *, use_h5py: bool = True, limits: Limits | None = None) -> list[Finding]:
    analyzer = HDF5Analyzer(use_h5py=use_h5py)
    return list(analyzer.analyze(BytesSource(data), Location("model.h5"), _ctx(limits)))


def _lambda_config() -> str:
    code = base64.b64encode(marshal.dumps(compile("lambda x: x", "<t>", "eval"))).decode()
    layer = {"class_name": "Lambda", "config": {"name": "l", "function": [code, None, None], "function_type": "lambda"}}
    return json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [layer]}})


def _dense_config() -> str:
    layer = {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "relu"}}
    return json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [layer]}})


def _keras2_file(config: str, training: str | None = None) -> bytes:
    def populate(h5: Any) -> None:
        h5.attrs["model_config"] = config
        if training is not None:
            h5.attrs["training_config"] = training
        h5.attrs["keras_version"] = "2.15.0"
        h5.create_dataset("model_weights/dense/kernel", data=np.ones((3, 2), np.float32))

    return _h5(populate)


def test_a_weights_only_hdf5_file_has_no_findings() -> None:
    def populate(h5: Any) -> None:
        h5.create_dataset("layers/dense/vars/0", data=np.arange(6, dtype=np.float32).reshape(2, 3))
        h5.attrs["note"] = "weights only"

    assert _scan(_h5(populate)) == []


def test_a_keras2_model_of_built_in_layers_has_no_findings() -> None:
    training = json.dumps({"optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}})
    assert _scan(_keras2_file(_dense_config(), training)) == []


def test_a_lambda_layer_in_model_config_is_critical() -> None:
    findings = _scan(_keras2_file(_lambda_config()))
    assert [f.code for f in findings] == [codes.KERAS_LAMBDA.code]
    assert findings[0].member == "@model_config"


def test_a_model_config_stored_as_bytes_is_checked_too() -> None:
    data = _h5(lambda h5: h5.attrs.__setitem__("model_config", np.bytes_(_lambda_config().encode())))
    assert [f.code for f in _scan(data)] == [codes.KERAS_LAMBDA.code]


def test_a_model_config_that_is_not_a_string_is_flagged() -> None:
    data = _h5(lambda h5: h5.attrs.__setitem__("model_config", np.arange(3)))
    assert [f.code for f in _scan(data)] == [codes.H5_BAD_ATTRIBUTE.code]


def test_a_model_config_that_is_not_json_is_malformed() -> None:
    assert [f.code for f in _scan(_keras2_file("{not json"))] == [codes.KERAS_MALFORMED.code]


def test_a_model_config_over_max_header_bytes_is_an_error() -> None:
    findings = _scan(_keras2_file(_dense_config()), limits=Limits(max_header_bytes=64))
    assert [(f.code, f.kind) for f in findings] == [(codes.H5_ATTRIBUTE_TOO_LARGE.code, RuleKind.ERROR)]


def test_an_external_link_to_another_file_is_flagged() -> None:
    def populate(h5: Any) -> None:
        h5["leak"] = h5py.ExternalLink("/etc/passwd", "/data")
        h5["inside"] = h5py.SoftLink("/leak")

    findings = _scan(_h5(populate))
    assert [f.code for f in findings] == [codes.H5_EXTERNAL_REFERENCE.code]
    assert findings[0].evidence["file"] == "/etc/passwd"


def test_external_dataset_storage_is_flagged(tmp_path: Path) -> None:
    raw = tmp_path / "raw.bin"
    raw.write_bytes(bytes(16))

    def populate(h5: Any) -> None:
        h5.create_dataset("ext", shape=(4,), dtype="f4", external=[(str(raw), 0, 16)])

    findings = _scan(_h5(populate))
    assert [f.code for f in findings] == [codes.H5_EXTERNAL_REFERENCE.code]


def test_a_virtual_dataset_over_another_file_is_flagged() -> None:
    def populate(h5: Any) -> None:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource("other.h5", "data", shape=(4,))
        h5.create_virtual_dataset("virt", layout)

    assert [f.code for f in _scan(_h5(populate))] == [codes.H5_EXTERNAL_REFERENCE.code]


def test_walking_more_objects_than_allowed_raises_the_limit() -> None:
    def populate(h5: Any) -> None:
        for i in range(10):
            h5.create_group(f"g{i}")

    with pytest.raises(LimitExceeded):
        _scan(_h5(populate), limits=Limits(max_archive_members=5))


def test_an_unreadable_hdf5_file_is_flagged_and_searched_for_markers() -> None:
    data = b"\x89HDF\r\n\x1a\n" + b"\0" * 100 + _lambda_config().encode()
    assert {f.code for f in _scan(data)} == {codes.H5_MALFORMED.code, codes.H5_LAMBDA_MARKER.code}


def test_without_h5py_the_file_is_skipped_and_lambda_markers_are_still_found() -> None:
    findings = _scan(_keras2_file(_lambda_config()), use_h5py=False)
    kinds = {(f.code, f.kind) for f in findings}
    assert (codes.H5_NOT_ANALYSED.code, RuleKind.SKIPPED) in kinds
    assert codes.H5_LAMBDA_MARKER.code in {f.code for f in findings}


def test_without_h5py_a_clean_file_still_fails_closed() -> None:
    findings = _scan(_keras2_file(_dense_config()), use_h5py=False)
    assert [(f.code, f.kind) for f in findings] == [(codes.H5_NOT_ANALYSED.code, RuleKind.SKIPPED)]
    assert findings[0].message == "HDF5 not fully analysed (install h5py)"


def test_the_byte_search_reads_no_more_than_max_header_bytes() -> None:
    data = b"\x89HDF\r\n\x1a\n" + bytes(4096) + b"__lambda__"
    assert codes.H5_LAMBDA_MARKER.code not in {
        f.code for f in _scan(data, use_h5py=False, limits=Limits(max_header_bytes=4096))
    }
    assert codes.H5_LAMBDA_MARKER.code in {f.code for f in _scan(data, use_h5py=False)}
