"""Benign corpus cases: real checkpoints and configs a sane scanner must approve.

Every file is written by the library that users write it with (``torch.save``,
``numpy.save``, ``joblib.dump``, ``safetensors``, ``onnx``, ``h5py``,
``transformers``) with fixed seeds, so the corpus measures false alarms on
what actually ships (THREATS.md section 4.1: false positives on ordinary
checkpoints are the users' first complaint). Decision recorded here: an empty
file is benign (there is nothing to load). Not handled here: writing files or
scanning them.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import io
import json
import pickle
import tarfile
from typing import Any

from tests.corpus import makers
from tests.corpus.spec import CaseList, Payload
from tests.corpus.writers import gguf_bytes, keras_config, keras_layer, zip_bytes, zip_members

BENIGN = CaseList("approved")
case = BENIGN.case
_FOR_TORCH = "THREATS 4.1 (false positives on ordinary torch checkpoints)"


def _gen() -> Any:
    import torch

    return torch.Generator().manual_seed(0)


@case("torch/state_dict.pt", _FOR_TORCH, needs="torch")
def state_dict(_: Payload) -> bytes:
    """``torch.save`` of a state dict (zip format)."""
    return makers.save(makers.tiny_state())


@case("torch/state_dict_legacy.pt", _FOR_TORCH, needs="torch")
def state_dict_legacy(_: Payload) -> bytes:
    """The same state dict in the legacy stacked-pickle format."""
    return makers.save(makers.tiny_state(), legacy=True)


@case("torch/state_dict_protocol4.pt", _FOR_TORCH, needs="torch")
def state_dict_protocol4(_: Payload) -> bytes:
    """A state dict saved with ``pickle_protocol=4`` (STACK_GLOBAL, MEMOIZE, FRAME)."""
    return makers.save(makers.tiny_state(), protocol=4)


@case("torch/bfloat16.pt", "THREATS 5.1 (bfloat16 storages)", needs="torch")
def bfloat16(_: Payload) -> bytes:
    """A bfloat16 tensor."""
    import torch

    return makers.save({"w": torch.randn(4, 4, generator=_gen()).to(torch.bfloat16)})


@case("torch/float8_e4m3fn.pt", "THREATS 5.1 (float8 storages)", needs="torch")
def float8_e4m3fn(_: Payload) -> bytes:
    """A float8_e4m3fn tensor."""
    import torch

    return makers.save({"w": torch.randn(8, generator=_gen()).to(torch.float8_e4m3fn)})


@case("torch/float8_e5m2.pt", "THREATS 5.1 (float8 storages)", needs="torch")
def float8_e5m2(_: Payload) -> bytes:
    """A float8_e5m2 tensor."""
    import torch

    return makers.save({"w": torch.randn(8, generator=_gen()).to(torch.float8_e5m2)})


@case("torch/mixed_dtypes.pt", _FOR_TORCH, needs="torch")
def mixed_dtypes(_: Payload) -> bytes:
    """Half, int8, bool, int64 and complex64 tensors together."""
    import torch

    base = torch.randn(6, generator=_gen())
    return makers.save(
        {
            "f16": base.half(),
            "i8": base.to(torch.int8),
            "mask": base > 0,
            "ids": torch.arange(6),
            "c": base.to(torch.complex64),
        }
    )


@case("torch/optimizer_adam.pt", "THREATS 4.1 (optimizer states)", needs="torch")
def optimizer_adam(_: Payload) -> bytes:
    """A training checkpoint: model, Adam state after one step (tensor ``step`` counters), epoch."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return makers.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1, "loss": 0.5})


@case("torch/parameter.pt", "THREATS 5.1 (_rebuild_parameter)", needs="torch")
def parameter(_: Payload) -> bytes:
    """An ``nn.Parameter`` saved directly."""
    import torch

    return makers.save(torch.nn.Parameter(torch.randn(3, generator=_gen())))


@case("torch/full_tensor.pt", _FOR_TORCH, needs="torch")
def full_tensor(_: Payload) -> bytes:
    """A bare tensor, not a dict."""
    import torch

    return makers.save(torch.randn(2, 2, generator=_gen()))


@case("torch/shared_storage_views.pt", "THREATS 5.2 (storages shared by several tensors)", needs="torch")
def shared_storage_views(_: Payload) -> bytes:
    """Tensors sharing one storage: a slice, a reshaped view, a transposed view."""
    import torch

    base = torch.arange(12, dtype=torch.float32)
    return makers.save({"base": base, "slice": base[2:6], "grid": base.view(3, 4), "t": base.view(3, 4).t()})


@case("torch/quantized.pt", "THREATS 5.1 (qschemes)", needs="torch")
def quantized(_: Payload) -> bytes:
    """A per-tensor quantized tensor (``_rebuild_qtensor``, qscheme)."""
    import torch

    return makers.save({"q": torch.quantize_per_tensor(torch.linspace(0, 1, 8), 0.1, 0, torch.quint8)})


@case("torch/namespace_metadata.pt", "THREATS 5.1 (metadata types in checkpoints)", needs="torch")
def namespace_metadata(_: Payload) -> bytes:
    """A checkpoint carrying the training ``argparse.Namespace``."""
    args = argparse.Namespace(lr=0.001, epochs=3, model="tiny", layers=[2, 2])
    return makers.save({"args": args, "state": makers.tiny_state()})


@case("torch/datetime_metadata.pt", "THREATS 5.1 (datetime in the default allowlist)", needs="torch")
def datetime_metadata(_: Payload) -> bytes:
    """A checkpoint carrying datetime, date and timedelta values."""
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    meta = {"saved": when, "day": when.date(), "took": dt.timedelta(minutes=5)}
    return makers.save({"meta": meta, "state": makers.tiny_state()})


@case("torch/collections_metadata.pt", "THREATS 5.1 (defaultdict/Counter/deque allowlisted)", needs="torch")
def collections_metadata(_: Payload) -> bytes:
    """A checkpoint carrying ``defaultdict(list)``, ``Counter``, ``deque`` and ``OrderedDict``."""
    history: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
    history["loss"].extend([1.0, 0.5])
    meta = {
        "history": history,
        "tokens": collections.Counter("abracadabra"),
        "recent": collections.deque([1, 2, 3], maxlen=5),
        "order": collections.OrderedDict(a=1, b=2),
    }
    return makers.save({"meta": meta, "state": makers.tiny_state()})


@case("torch/renamed_root.pt", "issue 2 (any archive root name)", needs="torch")
def renamed_root(_: Payload) -> bytes:
    """A torch zip whose ``archive/`` root is renamed ``my_model/`` (torch accepts any root)."""
    members = zip_members(makers.save(makers.tiny_state()))
    return zip_bytes([("my_model/" + name.split("/", 1)[1], data) for name, data in members])


@case("sharded", "THREATS 4.1 (sharded checkpoints with an index)", needs="torch")
def sharded(_: Payload) -> dict[str, bytes]:
    """Two ``pytorch_model-0000N-of-00002.bin`` shards and ``pytorch_model.bin.index.json``."""
    import torch

    gen = _gen()
    shards = {
        "pytorch_model-00001-of-00002.bin": {"layer.0.weight": torch.randn(4, 4, generator=gen)},
        "pytorch_model-00002-of-00002.bin": {"layer.1.weight": torch.randn(4, 4, generator=gen)},
    }
    files = {name: makers.save(state) for name, state in shards.items()}
    index = {
        "metadata": {"total_size": 2 * 16 * 4},
        "weight_map": {key: name for name, state in shards.items() for key in state},
    }
    files["pytorch_model.bin.index.json"] = json.dumps(index, indent=2).encode()
    return files


@case("hf_gpt2_tiny", "THREATS 4.1 (HF-style pytorch_model.bin)", needs="transformers")
def hf_gpt2_tiny(_: Payload) -> dict[str, bytes]:
    """A tiny GPT-2 (transformers) saved as ``pytorch_model.bin`` with its ``config.json``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=32, n_positions=16, n_embd=8, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=1)
    model = GPT2LMHeadModel(config)
    return {"pytorch_model.bin": makers.save(model.state_dict()), "config.json": config.to_json_string().encode()}


@case("numpy/weights.npy", "THREATS 5.5 (numeric .npy)")
def weights_npy(_: Payload) -> bytes:
    """A numeric ``.npy`` array."""
    import numpy as np

    out = io.BytesIO()
    np.save(out, np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), allow_pickle=False)
    return out.getvalue()


@case("numpy/weights.npz", "THREATS 5.5 (numeric .npz)")
def weights_npz(_: Payload) -> bytes:
    """A numeric ``.npz`` (compressed) with two arrays."""
    import numpy as np

    out = io.BytesIO()
    np.savez_compressed(out, w=np.arange(12, dtype=np.float64).reshape(3, 4), b=np.zeros(3, np.int32))
    return out.getvalue()


@case("numpy/array_pickle_proto2.pkl", "THREATS 5.1 (numpy reconstruction allowlisted)")
def array_pickle_proto2(_: Payload) -> bytes:
    """A NumPy array and scalar pickled with protocol 2 (``_reconstruct``, ``dtype``, ``scalar``)."""
    import numpy as np

    return pickle.dumps({"w": np.arange(6, dtype=np.float32), "s": np.float64(1.5)}, protocol=2)


@case("numpy/array_pickle_proto5.pkl", "THREATS 5.1 (numpy _frombuffer)")
def array_pickle_proto5(_: Payload) -> bytes:
    """A NumPy array pickled with protocol 5 (``_frombuffer``)."""
    import numpy as np

    return pickle.dumps(np.linspace(0, 1, 5), protocol=5)


def _joblib(compress: object) -> bytes:
    import joblib
    import numpy as np

    out = io.BytesIO()
    joblib.dump({"coef": np.linspace(0, 1, 8), "intercept": np.zeros(2), "classes": [0, 1]}, out, compress=compress)
    return out.getvalue()


@case("joblib/arrays.joblib", "THREATS 5.5 (joblib NumpyArrayWrapper)")
def joblib_arrays(_: Payload) -> bytes:
    """``joblib.dump`` of a dict of arrays."""
    return _joblib(0)


@case("joblib/arrays_zlib.joblib", "THREATS 5.5 (compressed joblib)")
def joblib_arrays_zlib(_: Payload) -> bytes:
    """The same, zlib-compressed."""
    return _joblib(3)


@case("pickle/plain_dict_proto0.pkl", "THREATS 4.4 (protocol 0 without PROTO)")
def plain_dict_proto0(_: Payload) -> bytes:
    """A plain dict of numbers and strings, protocol 0."""
    return pickle.dumps({"lr": 0.1, "steps": [1, 2, 3], "name": "tiny"}, protocol=0)


@case("pickle/plain_dict_proto2.pkl", "THREATS 4.4")
def plain_dict_proto2(_: Payload) -> bytes:
    """A plain dict with nested containers, protocol 2."""
    return pickle.dumps({"a": (1, 2.5, None, True), "b": {"c": b"bytes", "d": {1, 2}}}, protocol=2)


@case("safetensors/model.safetensors", "issue 2 (safetensors header validation)", needs="torch")
def safetensors_torch(_: Payload) -> bytes:
    """``safetensors.torch.save`` of float32 and bfloat16 tensors with metadata."""
    import torch
    from safetensors.torch import save

    state = makers.tiny_state()
    return save({**state, "bf16": state["weight"].to(torch.bfloat16)}, metadata={"format": "pt"})


@case("safetensors/numpy.safetensors", "issue 2 (safetensors header validation)")
def safetensors_numpy(_: Payload) -> bytes:
    """``safetensors.numpy.save`` of float32 and float16 tensors."""
    return makers.safetensors_bytes()


@case("safetensors/model.safetensors.index.json", "issue 2 (plain JSON config)")
def safetensors_index(_: Payload) -> bytes:
    """A sharded-safetensors index file."""
    return json.dumps({"metadata": {"total_size": 64}, "weight_map": {"embed.weight": "model.safetensors"}}).encode()


@case("gguf/tiny.gguf", "issue 2 (GGUF)")
def tiny_gguf(_: Payload) -> bytes:
    """A minimal valid GGUF v3 with a plain chat template and one tensor."""
    metadata: dict[str, object] = {
        "general.architecture": "llama",
        "general.name": "tiny",
        "general.alignment": 32,
        "tokenizer.ggml.tokens": ["<s>", "</s>", "a"],
        "tokenizer.chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    }
    return gguf_bytes(metadata, {"token_embd.weight": [0.5, 1.5, 2.5, 3.5]})


@case("onnx/tiny.onnx", "issue 2 (ONNX)", needs="onnx")
def tiny_onnx(_: Payload) -> bytes:
    """A one-node ONNX model with an inline initializer."""
    return makers.onnx_model()


def _h5(populate: Any) -> bytes:
    import h5py

    out = io.BytesIO()
    with h5py.File(out, "w") as h5:
        populate(h5)
    return out.getvalue()


@case("keras/dense.keras", "THREATS 5.5 (Keras without Lambda)", needs="h5py")
def dense_keras(_: Payload) -> bytes:
    """A Keras 3 zip: metadata, a Dense-only config and HDF5 weights."""
    import numpy as np

    layers = [
        keras_layer("InputLayer", {"name": "input", "batch_shape": [None, 3]}),
        keras_layer("Dense", {"name": "dense", "units": 2, "activation": "relu", "use_bias": True}),
    ]

    def populate(h5: Any) -> None:
        h5.create_dataset("layers/dense/vars/0", data=np.ones((3, 2), np.float32))
        h5.create_dataset("layers/dense/vars/1", data=np.zeros(2, np.float32))

    meta = json.dumps({"keras_version": "3.4.1", "date_saved": "2024-01-01@00:00:00"}).encode()
    return zip_bytes(
        [("metadata.json", meta), ("config.json", keras_config(layers)), ("model.weights.h5", _h5(populate))]
    )


@case("hdf5/weights.h5", "issue 2 (HDF5 without model code)", needs="h5py")
def weights_h5(_: Payload) -> bytes:
    """An HDF5 file with plain numeric datasets."""
    import numpy as np

    def populate(h5: Any) -> None:
        h5.create_dataset("dense/kernel", data=np.arange(6, dtype=np.float32).reshape(2, 3))
        h5.attrs["note"] = "weights only"

    return _h5(populate)


@case("config/config.json", "issue 2 (plain JSON config)")
def config_json(_: Payload) -> bytes:
    """A model ``config.json``."""
    return json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 32}).encode()


@case("config/tokenizer.json", "issue 2 (tokenizer)")
def tokenizer_json(_: Payload) -> bytes:
    """A small ``tokenizer.json`` in the tokenizers library's layout."""
    vocab = {"<unk>": 0, "a": 1, "b": 2, "ab": 3}
    model = {"type": "BPE", "vocab": vocab, "merges": ["a b"], "unk_token": "<unk>"}
    return json.dumps({"version": "1.0", "model": model, "added_tokens": [], "normalizer": None}).encode()


@case("text/README.md", "issue 2 (text)")
def readme(_: Payload) -> bytes:
    """A model card."""
    return b"# tiny model\n\nA test model with no code. License: MIT.\n"


@case("text/empty.bin", "decision: an empty file is benign (nothing to load)")
def empty(_: Payload) -> bytes:
    """An empty file."""
    return b""


@case("archives/bundle.tar", "THREATS 4.3 (tar of safe files)")
def bundle_tar(_: Payload) -> bytes:
    """A tar holding a safetensors file and its config, without record padding."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in (("model.safetensors", makers.safetensors_bytes()), ("config.json", b'{"a": 1}')):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
        end = out.tell() + 1024  # members, then the two zero blocks that end a tar
    # Drop tarfile's padding to a 10 KiB record: the file ends right after the end-of-archive
    # blocks, so every truncation cuts real content (tar readers accept the shorter form).
    return out.getvalue()[:end]
