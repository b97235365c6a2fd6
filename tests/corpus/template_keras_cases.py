"""Corpus cases for issue 15: chat-template escapes and Keras configs the loader reads.

Blocked: GGUF files and a ``tokenizer_config.json`` whose chat template
escapes Jinja through names computed at render time (each template runs the
payload under a plain ``jinja2.Environment``: tests/formats/test_jinja_template.py
proves it in a subprocess), a ``chat_template.jinja`` file, and a ``.keras`` zip
holding only ``config.json`` (Keras 3's ``saving_lib`` reads and deserializes
it before looking for weights). Red-team regressions (generators on the
``redteam`` branch turned into cases): chat templates that get a bound
``str.format`` from ``map(attribute=...)``/``groupby`` and call it through a
dict (raw GGUF, ``tokenizer_config.json`` in a model folder, a
``chat_template.jinja`` file), and ``.keras`` files with a
``TorchModuleWrapper`` whose ``module`` is a base64 pickle (every spelling,
inside a Functional, and in an ``.h5``). Approved: GGUF files and a
``tokenizer_config.json`` with published chat templates (including one that
picks the system prompt with ``selectattr``/``map(attribute=...)``), and a
compiled Keras 3 model saved with the torch backend.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
from typing import Any

from tests.corpus.spec import CaseList, Payload
from tests.corpus.writers import gguf_bytes, keras_config, keras_layer, zip_bytes
from tests.formats.chat_templates import BENIGN as TEMPLATES
from tests.formats.chat_templates import ESCAPES, READS

TEMPLATE_BLOCKED = CaseList("blocked")
TEMPLATE_APPROVED = CaseList("approved")
_ISSUE = "issue 15 (chat template escapes through computed names; CVE-2024-34359)"
_KERAS_ISSUE = "issue 15 (.keras zip recognised by what saving_lib reads; CVE-2024-3660)"
_META = json.dumps({"keras_version": "3.6.0", "date_saved": "2024-10-01@00:00:00"}).encode()


def _gguf(template: str) -> bytes:
    metadata = {"general.architecture": "llama", "general.name": "tiny", "tokenizer.chat_template": template}
    return gguf_bytes(metadata, {"token_embd.weight": [0.0, 1.0, 2.0, 3.0]})


def _escape_case(name: str, slug: str) -> None:
    @TEMPLATE_BLOCKED.case(f"templates/gguf_{slug}.gguf", _ISSUE)
    def build(p: Payload) -> bytes:
        return _gguf("{% for m in messages %}{{ m.content }}{% endfor %}" + ESCAPES[name](p.shell))


for _name, _slug in (
    ("concatenated item names", "concatenated_names"),
    ("attr filter", "attr_filter"),
    ("format filter", "format_filter"),
    ("join filter", "join_filter"),
    ("cycler.__init__.__globals__.os", "cycler_globals"),
    ("lipsum.__globals__", "lipsum_globals"),
    ("map(attribute=)", "map_attribute"),
):
    _escape_case(_name, _slug)


@TEMPLATE_BLOCKED.case("templates/tokenizer_config.json", _ISSUE)
def tokenizer_config_escape(p: Payload) -> bytes:
    """A tokenizer_config.json whose named tool-use template escapes the sandbox."""
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": [
            {"name": "default", "template": TEMPLATES["chatml"]},
            {"name": "tool_use", "template": ESCAPES["join filter"](p.shell)},
        ],
    }
    # As transformers' save_pretrained writes it: indented, sorted, with a final newline.
    return (json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@TEMPLATE_BLOCKED.case("templates/repo/chat_template.jinja", _ISSUE)
def chat_template_file(p: Payload) -> bytes:
    """transformers' ``chat_template.jinja`` file holding a namespace-class escape."""
    return ESCAPES["namespace class"](p.shell).encode()


def _lambda_layer(p: Payload) -> dict[str, object]:
    code = compile(f"lambda x: (__import__('os').system({p.shell!r}), x)[1]", "<corpus>", "eval")
    function = {"class_name": "__lambda__", "config": {"code": base64.b64encode(marshal.dumps(code)).decode()}}
    return keras_layer("Lambda", {"name": "l", "function": function})


@TEMPLATE_BLOCKED.case("keras3/config_only_lambda.keras", _KERAS_ISSUE)
def keras_config_only(p: Payload) -> bytes:
    """A ``.keras`` zip with nothing but ``config.json`` (a Lambda layer): no metadata, no weights."""
    return zip_bytes([("config.json", keras_config([_lambda_layer(p)]))])


@TEMPLATE_BLOCKED.case("keras3/lambda_beside_other_files.keras", _KERAS_ISSUE)
def keras_config_among_assets(p: Payload) -> bytes:
    """``config.json`` without a top-level class_name (deserialize_keras_object walks it anyway), plus assets."""
    config = json.dumps({"model": {"module": "keras", "class_name": "Sequential", "config": {
        "name": "s", "layers": [_lambda_layer(p)]}, "registered_name": None}}).encode()  # fmt: skip
    return zip_bytes([("assets/vocab.txt", b"a\nb\n"), ("config.json", config)])


@TEMPLATE_BLOCKED.case("keras3/legacy_lambda_keras3_fields.h5", _KERAS_ISSUE, needs="h5py")
def keras_h5_lambda(p: Payload) -> bytes:
    """An ``.h5`` model whose ``model_config`` holds a Keras 3-style Lambda (module and registered_name)."""
    import h5py

    out = io.BytesIO()
    with h5py.File(out, "w") as h5:
        h5.attrs["model_config"] = keras_config([_lambda_layer(p)]).decode()
        h5.attrs["keras_version"] = "3.6.0"
        h5.attrs["backend"] = "torch"
    return out.getvalue()


_RT_ISSUE = "issue 15 red team (str.format reached through map(attribute=) and a dict's method name)"
_RT_KERAS = "issue 15 red team (TorchModuleWrapper: Keras 3.11.0-3.11.2 torch.load(weights_only=False) in safe mode)"


def _read_case(name: str, slug: str) -> None:
    @TEMPLATE_BLOCKED.case(f"templates/gguf_{slug}.gguf", _RT_ISSUE)
    def raw(_: Payload) -> bytes:
        return _gguf(READS[name])

    @TEMPLATE_BLOCKED.case(f"templates/{slug}_repo", _RT_ISSUE)
    def in_repo(_: Payload) -> dict[str, bytes]:
        config = {"chat_template": READS[name], "eos_token": "</s>", "tokenizer_class": "PreTrainedTokenizerFast"}
        return {"tokenizer_config.json": (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()}

    @TEMPLATE_BLOCKED.case(f"templates/{slug}_jinja_repo", _RT_ISSUE)
    def jinja_file(_: Payload) -> dict[str, bytes]:
        return {"chat_template.jinja": READS[name].encode()}


for _name, _slug in (
    ("map(attribute='format') called as dict.strip", "map_format_dict_strip"),
    ("groupby('format') grouper called as dict.join", "groupby_format_dict_join"),
):
    _read_case(_name, _slug)


def _pickled_module(p: Payload) -> str:
    """What TorchModuleWrapper.get_config writes in ``module``: base64 of a torch.load-able pickle (protocol 2;
    torch.load falls back to its legacy reader), here one that runs the payload."""
    cmd = p.shell.encode()
    data = b"\x80\x02cos\nsystem\nX" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R."
    return base64.b64encode(data).decode("ascii")


def _torch_wrapper(
    p: Payload, module: str = "keras.layers", class_name: str = "TorchModuleWrapper"
) -> dict[str, object]:
    config = {"name": "torch_module_wrapper", "trainable": True, "dtype": "float32", "module": _pickled_module(p),
              "output_shape": None}  # fmt: skip
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


@TEMPLATE_BLOCKED.case("keras3/torch_module_wrapper.keras", _RT_KERAS)
def keras_torch_wrapper(p: Payload) -> bytes:
    """The red team's file: metadata.json and a config.json that is one TorchModuleWrapper layer."""
    meta = json.dumps({"keras_version": "3.11.0", "date_saved": "2025-08-01@00:00:00"}).encode()
    return zip_bytes([("metadata.json", meta), ("config.json", json.dumps(_torch_wrapper(p)).encode())])


@TEMPLATE_BLOCKED.case("keras3/torch_module_wrapper_root_spelling.keras", _RT_KERAS)
def keras_torch_wrapper_spelled(p: Payload) -> bytes:
    """Inside a Sequential beside a Dense, named module "keras" + class "layers.TorchModuleWrapper" (the same
    exported name to Keras), and once more from its defining module."""
    layers = [
        keras_layer("Dense", {"name": "d", "units": 2}),
        _torch_wrapper(p, module="keras", class_name="layers.TorchModuleWrapper"),
        _torch_wrapper(p, module="keras.src.utils.torch_utils"),
    ]
    return zip_bytes([("metadata.json", _META), ("config.json", keras_config(layers))])


@TEMPLATE_BLOCKED.case("keras3/torch_module_wrapper_repo", _RT_KERAS)
def keras_torch_wrapper_repo(p: Payload) -> dict[str, bytes]:
    """A model folder whose ``model.keras`` holds the wrapper (``verify DIR`` on a Hub-style snapshot)."""
    return {"model.keras": keras_torch_wrapper(p)}


@TEMPLATE_BLOCKED.case("keras3/torch_module_wrapper.h5", _RT_KERAS, needs="h5py")
def keras_h5_torch_wrapper(p: Payload) -> bytes:
    """An ``.h5`` model whose ``model_config`` holds the wrapper."""
    import h5py

    out = io.BytesIO()
    with h5py.File(out, "w") as h5:
        h5.attrs["model_config"] = keras_config([_torch_wrapper(p)]).decode()
        h5.attrs["keras_version"] = "3.11.0"
        h5.attrs["backend"] = "torch"
    return out.getvalue()


for _name in (
    "chatml", "llama3", "llama3.1-tools", "mistral", "qwen2.5-tools", "system-prompt-words", "selectattr-system"
):  # fmt: skip
    TEMPLATE_APPROVED.case(f"templates/published_{_name.replace('.', '_')}.gguf", _ISSUE)(
        lambda _p, _t=TEMPLATES[_name]: _gguf(_t)
    )


@TEMPLATE_APPROVED.case("templates/selectattr_system_repo", _RT_ISSUE)
def selectattr_system_repo(_: Payload) -> dict[str, bytes]:
    """A ``tokenizer_config.json`` whose template picks the system prompt with selectattr and map(attribute=)."""
    config = {"chat_template": TEMPLATES["selectattr-system"], "eos_token": "<|end|>"}
    return {"tokenizer_config.json": (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()}


def _obj(module: str, class_name: str, config: object, registered: str | None = None) -> dict[str, object]:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": registered}


def torch_compiled_config() -> dict[str, Any]:
    """config.json of ``Sequential([Input((4,)), Dense(2)])`` compiled with Adam, saved under KERAS_BACKEND=torch.

    The optimizer is the torch subclass TorchOptimizer.__new__ substitutes; it has no public name, so
    serialize_keras_object writes its real module and its class name as registered_name.
    """
    dtype = _obj("keras", "DTypePolicy", {"name": "float32"})
    dense = _obj("keras.layers", "Dense", {
        "name": "dense", "trainable": True, "dtype": dtype, "units": 2, "activation": "linear", "use_bias": True,
        "kernel_initializer": _obj("keras.initializers", "GlorotUniform", {"seed": None}),
        "bias_initializer": _obj("keras.initializers", "Zeros", {}),
        "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
    })  # fmt: skip
    dense["build_config"] = {"input_shape": [None, 4]}
    inputs = _obj("keras.layers", "InputLayer", {"batch_shape": [None, 4], "dtype": "float32", "sparse": False,
                                                 "name": "input_layer"})  # fmt: skip
    adam = _obj("keras.src.backend.torch.optimizers.torch_adam", "Adam", {
        "name": "adam", "learning_rate": 0.0010000000474974513, "weight_decay": None, "clipnorm": None,
        "global_clipnorm": None, "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
        "ema_overwrite_frequency": None, "loss_scale_factor": None, "gradient_accumulation_steps": None,
        "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False,
    }, registered="Adam")  # fmt: skip
    model = _obj("keras", "Sequential", {"name": "sequential", "trainable": True, "dtype": dtype,
                                          "layers": [inputs, dense]})  # fmt: skip
    model["build_config"] = {"input_shape": [None, 4]}
    model["compile_config"] = {
        "optimizer": adam,
        "loss": _obj("keras.losses", "MeanSquaredError", {"name": "mean_squared_error", "reduction": "sum_over_batch_size"}),
        "loss_weights": None, "metrics": ["mae"], "weighted_metrics": None, "run_eagerly": False,
        "steps_per_execution": 1, "jit_compile": False,
    }  # fmt: skip
    return model


@TEMPLATE_APPROVED.case("keras3/torch_backend_compiled.keras", _KERAS_ISSUE, needs="h5py")
def keras_torch_compiled(_: Payload) -> bytes:
    """A compiled Keras 3 model saved with the torch backend: config, metadata and HDF5 weights."""
    import h5py
    import numpy as np

    weights = io.BytesIO()
    with h5py.File(weights, "w") as h5:
        h5.create_dataset("layers/dense/vars/0", data=np.ones((4, 2), np.float32))
        h5.create_dataset("layers/dense/vars/1", data=np.zeros(2, np.float32))
        h5.create_dataset("optimizer/vars/0", data=np.zeros((), np.int64))
    config = json.dumps(torch_compiled_config()).encode()
    return zip_bytes([("metadata.json", _META), ("config.json", config), ("model.weights.h5", weights.getvalue())])
