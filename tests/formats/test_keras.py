"""Keras config checks: Lambda layers, serialized functions, foreign modules, custom objects."""

from __future__ import annotations

import base64
import json
import marshal

import pytest

from weightguard.analysis.interface import Location
from weightguard.findings import Severity
from weightguard.formats import header_codes as codes
from weightguard.formats import keras_codes
from weightguard.formats.keras import check_keras_config

WHERE = Location("model.keras", ("config.json",))


def _obj(class_name: str, config: dict[str, object], module: str | None = "keras.layers", registered: object = None):
    return {"module": module, "class_name": class_name, "config": config, "registered_name": registered}


def _sequential(*layers: dict[str, object]) -> bytes:
    return json.dumps(_obj("Sequential", {"name": "seq", "layers": list(layers)}, module="keras")).encode()


def _dense(name: str = "dense") -> dict[str, object]:
    init = _obj("GlorotUniform", {"seed": None}, module="keras.initializers")
    dtype = _obj("DTypePolicy", {"name": "float32"}, module="keras")
    return _obj("Dense", {"name": name, "units": 2, "activation": "relu", "kernel_initializer": init, "dtype": dtype})


def _codes(data: bytes) -> list[str]:
    return [f.code for f in check_keras_config(data, WHERE)]


def _bytecode() -> str:
    # Harmless function; what matters is that it is marshalled bytecode (CVE-2024-3660 shape).
    return base64.b64encode(marshal.dumps(compile("lambda x: x + 1", "<test>", "eval"))).decode()


def test_a_keras3_config_of_built_in_layers_has_no_findings() -> None:
    functional = _obj(
        "Functional",
        {
            "name": "f",
            "layers": [
                _obj("InputLayer", {"name": "in", "batch_shape": [None, 3]}),
                _dense(),
            ],
            "input_layers": [["in", 0, 0]],
        },
        module="keras.src.models.functional",
        registered="Functional",
    )
    optimizer = _obj("Adam", {"learning_rate": 0.001}, module="keras.optimizers")
    config = {**functional, "compile_config": {"optimizer": optimizer, "loss": "mse"}}
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 3], "dtype": "float32"}}
    config["config"]["layers"][1]["inbound_nodes"] = [{"args": [tensor], "kwargs": {}}]  # type: ignore[index]
    assert check_keras_config(json.dumps(config).encode(), WHERE) == []


def test_a_keras3_lambda_layer_is_critical_and_reported_once() -> None:
    layer = _obj("Lambda", {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": _bytecode()}}})
    findings = check_keras_config(_sequential(_dense(), layer), WHERE)
    assert [f.code for f in findings] == [codes.KERAS_LAMBDA.code]
    assert findings[0].severity is Severity.CRITICAL
    assert findings[0].evidence["layer"] == "l"
    assert (findings[0].path, findings[0].member) == ("model.keras", "config.json")


def test_a_serialized_lambda_outside_a_lambda_layer_is_critical() -> None:
    activation = {"class_name": "__lambda__", "config": {"code": _bytecode(), "defaults": None}}
    layer = _dense()
    layer["config"]["activation"] = activation  # type: ignore[index]
    assert _codes(_sequential(layer)) == [codes.KERAS_SERIALIZED_FUNCTION.code]


def test_a_legacy_lambda_layer_with_function_type_lambda_is_critical() -> None:
    legacy = {"class_name": "Lambda", "config": {"function": [_bytecode(), None, None], "function_type": "lambda"}}
    config = {"class_name": "Sequential", "config": {"layers": [legacy]}}
    assert _codes(json.dumps(config).encode()) == [codes.KERAS_LAMBDA.code]
    loose = {"class_name": "Sequential", "config": {"layers": [], "x": {"function_type": "lambda", "function": "..."}}}
    assert _codes(json.dumps(loose).encode()) == [codes.KERAS_SERIALIZED_FUNCTION.code]


@pytest.mark.parametrize("module", ["os", "builtins", "__main__", "mypackage.layers", "keras_hub.evil", "kerasx"])
def test_an_object_from_a_module_outside_keras_is_high(module: str) -> None:
    findings = check_keras_config(_sequential(_obj("system", {"command": "id"}, module=module)), WHERE)
    assert [f.code for f in findings] == [codes.KERAS_FOREIGN_MODULE.code]
    assert findings[0].evidence["module"] == module


def test_a_non_string_module_is_foreign() -> None:
    assert _codes(_sequential(_obj("Dense", {}, module=["keras"]))) == [codes.KERAS_FOREIGN_MODULE.code]  # type: ignore[arg-type]


def test_a_registered_custom_object_needs_review() -> None:
    layer = _obj("MyLayer", {"name": "mine"}, module="keras.layers", registered="my_package>MyLayer")
    findings = check_keras_config(_sequential(layer), WHERE)
    assert [(f.code, f.severity) for f in findings] == [(codes.KERAS_CUSTOM_OBJECT.code, Severity.MEDIUM)]


def test_an_unknown_class_in_a_legacy_config_needs_review() -> None:
    config = {"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": {}},
              {"class_name": "Custom>Attention2", "config": {}}]}}  # fmt: skip
    assert _codes(json.dumps(config).encode()) == [codes.KERAS_CUSTOM_OBJECT.code]


@pytest.mark.parametrize(
    ("class_name", "module"),
    [("TFSMLayer", "keras.layers"), ("get_file", "keras.utils"), ("TFOpLambda", None)],
)
def test_built_ins_with_side_effects_on_load_are_high(class_name: str, module: str | None) -> None:
    codes_found = set(_codes(_sequential(_obj(class_name, {"name": "x"}, module=module))))
    assert codes.KERAS_GADGET.code in codes_found


@pytest.mark.parametrize("data", [b"{", b"\xff{}", b'{"a": 1} x', b"[" * 100_000 + b"]" * 100_000])
def test_a_config_that_is_not_json_is_malformed(data: bytes) -> None:
    assert _codes(data) == [codes.KERAS_MALFORMED.code]


def test_duplicate_keys_are_flagged_because_loaders_may_see_another_layer() -> None:
    data = b'{"class_name": "Sequential", "class_name": "Lambda", "config": {"layers": []}}'
    assert set(_codes(data)) == {codes.KERAS_DUPLICATE_KEY.code, codes.KERAS_LAMBDA.code}


def test_deeply_nested_configs_are_walked_iteratively() -> None:
    depth = 350  # 700 JSON levels: parsable, and deeper than a naive recursive walk would like
    inner = '{"class_name": "Lambda", "config": {}}'
    data = ('{"class_name": "Sequential", "config": ' + '{"wrap": [' * depth + inner + "]}" * depth + "}").encode()
    assert _codes(data) == [codes.KERAS_LAMBDA.code]


# --- issue 15 red team: Keras built-ins whose from_config runs a pickle or reads a file ----------------
_PICKLE_B64 = base64.b64encode(b"\x80\x02cbuiltins\nprint\nX\x02\x00\x00\x00hi\x85R.").decode()


@pytest.mark.parametrize(
    ("module", "class_name", "registered"),
    [
        ("keras.layers", "TorchModuleWrapper", None),  # the public name Keras writes
        ("keras", "layers.TorchModuleWrapper", None),  # module + "." + class_name is the exported name too
        ("keras.src.utils.torch_utils", "TorchModuleWrapper", "TorchModuleWrapper"),  # imported from its module
        ("keras.src.layers", "TorchModuleWrapper", None),  # any Keras module re-exporting the class
        (None, "Wrapper", "keras>TorchModuleWrapper"),  # found through the registry
    ],
)
def test_a_torch_module_wrapper_is_critical_whatever_its_spelling(
    module: str | None, class_name: str, registered: str | None
) -> None:
    layer = _obj(class_name, {"name": "t", "module": _PICKLE_B64, "output_shape": None}, module, registered)
    findings = check_keras_config(_sequential(_dense(), layer), WHERE)
    assert [f.code for f in findings] == [keras_codes.KERAS_PICKLED_MODULE.code]
    assert findings[0].severity is Severity.CRITICAL
    assert "pickled torch module" in findings[0].message


def test_a_lambda_spelled_through_the_keras_root_module_is_still_a_lambda() -> None:
    layer = _obj("layers.Lambda", {"name": "l", "function": "x"}, module="keras")
    assert _codes(_sequential(layer)) == [codes.KERAS_LAMBDA.code]


@pytest.mark.parametrize(
    "function",
    [
        {"module": "keras", "class_name": "function", "config": "utils.get_file", "registered_name": None},
        {"module": "keras.models", "class_name": "function", "config": "load_model", "registered_name": None},
        {"module": "keras", "class_name": "function", "config": "saving.load_weights", "registered_name": None},
    ],
)
def test_a_loading_function_named_through_a_function_object_is_a_gadget(function: dict[str, object]) -> None:
    layer = _obj("Dense", {"name": "d", "units": 2, "activation": function})
    assert codes.KERAS_GADGET.code in _codes(_sequential(layer))


@pytest.mark.parametrize("class_name", ["StringLookup", "IntegerLookup", "TextVectorization"])
def test_a_lookup_layer_whose_vocabulary_is_a_path_is_refused(class_name: str) -> None:
    layer = _obj(class_name, {"name": "v", "vocabulary": "/etc/passwd"})
    assert _codes(_sequential(layer)) == [keras_codes.KERAS_FILE_REFERENCE.code]
    inline = _obj(class_name, {"name": "v", "vocabulary": ["a", "b"]})
    assert _codes(_sequential(inline)) == []


def test_a_type_spec_is_resolved_like_a_class_and_only_tensorflow_specs_pass() -> None:
    spec = {"class_name": "__typespec__", "spec_name": "TensorSpec", "module": "tensorflow.python.framework.tensor",
            "config": [[None, 3], "float32", None], "registered_name": None}  # fmt: skip
    assert _codes(json.dumps(spec).encode()) == []
    hostile = {**spec, "spec_name": "TorchModuleWrapper", "module": "keras.layers"}
    assert keras_codes.KERAS_PICKLED_MODULE.code in _codes(json.dumps(hostile).encode())
    foreign = {**spec, "module": "os"}
    assert _codes(json.dumps(foreign).encode()) == [codes.KERAS_FOREIGN_MODULE.code]
