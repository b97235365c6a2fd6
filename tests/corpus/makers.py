"""Files made by the real libraries (torch, safetensors, onnx), shared by both corpus halves.

Heavy imports happen inside the functions so that importing the corpus stays
cheap; results that do not depend on the payload are cached so torch runs
each recipe once per process. Seeds are fixed. Not handled here: payloads or
expected verdicts.
"""

from __future__ import annotations

import io
import warnings
from functools import cache
from typing import Any


def save(obj: object, *, legacy: bool = False, protocol: int = 2) -> bytes:
    """``torch.save(obj)`` to bytes (zip format, or legacy stacked pickles)."""
    import torch

    out = io.BytesIO()
    torch.save(obj, out, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
    return out.getvalue()


def tiny_state() -> dict[str, Any]:
    """A deterministic two-tensor state dict."""
    import torch

    gen = torch.Generator().manual_seed(0)
    return {"weight": torch.randn(4, 3, generator=gen), "bias": torch.zeros(4)}


@cache
def torchscript() -> bytes:
    """A traced ``nn.Linear`` saved with ``torch.jit.save`` (carries ``code/``)."""
    import torch

    torch.manual_seed(0)
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        torch.jit.save(torch.jit.trace(torch.nn.Linear(3, 2), torch.zeros(1, 3)), out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def safetensors_bytes() -> bytes:
    """A small valid safetensors file (NumPy backend, no torch needed)."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray[Any, Any]] = {
        "embed.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "embed.bias": np.zeros(4, np.float16),
    }
    return save(tensors, metadata={"format": "np"})


def onnx_model(external_location: str | None = None) -> bytes:
    """A one-node ONNX model ``Y = X + W``; W's data is external when a location is given."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [2], [1.0, 2.0])
    if external_location is not None:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external_location), ("offset", "0"), ("length", "8")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="weightguard-corpus")
    model.ir_version = 8
    if external_location is None:
        onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
