"""Keras configs checked where Keras 3's saving_lib reads them (issue 15), through the whole scanner.

``saving_lib.load_model`` opens ``config.json`` in any zip and deserializes it
before it looks for ``model.weights.h5``; detection only names a zip "Keras"
when it also holds ``metadata.json`` or the weights, so the JSON analyzer checks
every ``config.json`` member the Keras zip analyzer did not.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.corpus.template_keras_cases import torch_compiled_config
from tests.corpus.writers import keras_config, keras_layer, zip_bytes
from weightguard.analysis.interface import Location
from weightguard.api import file_blocking, scan_file_bytes
from weightguard.formats import header_codes as codes
from weightguard.formats.keras import check_keras_objects
from weightguard.policy import load_policy

_LAMBDA = keras_layer("Lambda", {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "AA=="}}})
_META = json.dumps({"keras_version": "3.6.0"}).encode()


def _codes(data: bytes, name: str = "model.keras") -> list[str]:
    """The findings' codes; whenever there are any, the default policy must block the file."""
    loaded = load_policy(None)
    scanned = scan_file_bytes(data, name, loaded)
    found = [f.code for f in scanned.outcome.findings]
    assert bool(file_blocking(scanned, loaded)) == bool(found)
    return found


def test_issue_15_a_keras_zip_with_only_config_json_has_its_lambda_found() -> None:
    assert _codes(zip_bytes([("config.json", keras_config([_LAMBDA]))])) == [codes.KERAS_LAMBDA.code]


def test_issue_15_a_lambda_under_a_config_without_class_name_is_found() -> None:
    config = json.dumps({"wrapper": json.loads(keras_config([_LAMBDA]))}).encode()
    assert _codes(zip_bytes([("config.json", config)])) == [codes.KERAS_LAMBDA.code]


def test_a_lambda_in_a_recognised_keras_zip_is_reported_once() -> None:
    data = zip_bytes([("metadata.json", _META), ("config.json", keras_config([_LAMBDA]))])
    assert _codes(data).count(codes.KERAS_LAMBDA.code) == 1


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_issue_15_a_second_config_json_in_a_keras_zip_is_checked_too() -> None:
    benign = keras_config([keras_layer("Dense", {"name": "d", "units": 1})])
    data = zip_bytes([("metadata.json", _META), ("config.json", benign), ("config.json", keras_config([_LAMBDA]))])
    assert codes.KERAS_LAMBDA.code in _codes(data)


def test_issue_15_a_torch_backend_compiled_model_config_is_approved() -> None:
    assert check_keras_objects(torch_compiled_config(), Location("model.keras", ("config.json",))) == []


@pytest.mark.parametrize(
    ("module", "class_name"),
    [
        ("keras.src.backend.torch.optimizers.torch_adam", "Popen"),
        ("keras.src.backend.torch.optimizers.torch_adam.os", "Adam"),
        ("keras.src.backend.torch.optimizerz", "Adam"),
        ("os", "Adam"),
    ],
)
def test_other_modules_beside_the_torch_optimizers_stay_foreign(module: str, class_name: str) -> None:
    config = copy.deepcopy(torch_compiled_config())
    config["compile_config"]["optimizer"].update(module=module, class_name=class_name)
    found = check_keras_objects(config, Location("model.keras", ("config.json",)))
    assert [f.code for f in found] == [codes.KERAS_FOREIGN_MODULE.code]


def test_a_hugging_face_config_json_inside_a_zip_is_not_a_finding() -> None:
    config = json.dumps({"model_type": "llama", "hidden_size": 8, "architectures": ["LlamaForCausalLM"]}).encode()
    assert _codes(zip_bytes([("config.json", config), ("README.md", b"hi")]), "repo.zip") == []
