"""Malicious container and format corpus cases (THREATS.md section 2, items 6-9 and 16).

PyTorch zip and legacy checkpoints, zip parser differentials, archives
(zip/tar/gzip/bz2/xz/7z) wrapping payloads, NumPy and joblib pickles, misleading
extensions, TorchScript code, Keras Lambda layers, ONNX external data that
escapes the model directory, and a GGUF chat template injection. Payloads
only create the marker file. Files are written with the real libraries
(``torch.save``, ``numpy.save``, ``joblib.dump``) where those can carry the
trick, and edited at byte level (:mod:`tests.corpus.writers`) where they
cannot. Nothing here loads anything. Not handled here: raw pickle gadgets
(:mod:`tests.corpus.malicious`).
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import marshal
import os
import tarfile
import zlib
from functools import cache

from tests.corpus import makers
from tests.corpus.asm import call, global_, program
from tests.corpus.malicious import Reduce
from tests.corpus.spec import CaseList, Payload
from tests.corpus.writers import (
    gguf_bytes,
    keras_config,
    keras_layer,
    patch_crc,
    patch_flags,
    pickle_spans,
    rename_central,
    replace_span,
    zip_bytes,
    zip_members,
)

CONTAINERS = CaseList("blocked")
case = CONTAINERS.case


def _system_pickle(p: Payload) -> bytes:
    return program(call(global_("posix", "system"), p.shell))


@cache
def _torch_payload_zip(shell: str) -> bytes:
    return makers.save({"state": makers.tiny_state(), "hook": Reduce(os.system, shell)})


@cache
def _torch_payload_legacy(shell: str) -> bytes:
    return makers.save({"state": makers.tiny_state(), "hook": Reduce(os.system, shell)}, legacy=True)


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


# -- PyTorch checkpoints (THREATS 5.5) ---------------------------------------------------------


@case("torch/zip_payload.pt", "THREATS 2.12 (MalHug: payload in a torch.save zip)", needs="torch")
def zip_payload(p: Payload) -> bytes:
    """A real ``torch.save`` zip whose state carries a ``posix.system`` reduce (MalHug)."""
    return _torch_payload_zip(p.shell)


@case("torch/legacy_payload_main.pt", "THREATS 5.5 (legacy torch, main pickle)", needs="torch")
def legacy_payload_main(p: Payload) -> bytes:
    """A legacy (non-zip) ``torch.save`` file with the payload in its main object pickle."""
    return _torch_payload_legacy(p.shell)


def _legacy_with(p: Payload, stream: int) -> bytes:
    data = makers.save(makers.tiny_state(), legacy=True)
    return replace_span(data, pickle_spans(data, 5)[stream], _system_pickle(p))


@case("torch/legacy_payload_magic.pt", "THREATS 2.9/5.5 (first stacked pickle)", needs="torch")
def legacy_payload_magic(p: Payload) -> bytes:
    """Legacy torch file whose first stacked pickle (the magic number) is the payload."""
    return _legacy_with(p, 0)


@case("torch/legacy_payload_sys_info.pt", "THREATS 5.5 (sys_info pickle)", needs="torch")
def legacy_payload_sys_info(p: Payload) -> bytes:
    """Legacy torch file whose third stacked pickle (sys_info) is the payload."""
    return _legacy_with(p, 2)


@case("torch/legacy_payload_storage_keys.pt", "THREATS 5.5 (storage-keys pickle)", needs="torch")
def legacy_payload_storage_keys(p: Payload) -> bytes:
    """Legacy torch file whose fifth stacked pickle (the storage keys list) is the payload."""
    return _legacy_with(p, 4)


@case("torch/torchscript_code.pt", "issue 2 (TorchScript code is a finding)", needs="torch")
def torchscript_code(p: Payload) -> bytes:
    """A TorchScript archive (``torch.jit.trace``): its ``code/`` runs when loaded with torch.jit.load."""
    return makers.torchscript()


@case("torch/extra_pickle_member.pt", "THREATS 5.4 (scan every pickle member)", needs="torch")
def extra_pickle_member(p: Payload) -> bytes:
    """A clean torch zip plus ``archive/extra.pkl`` holding the payload."""
    members = zip_members(makers.save(makers.tiny_state()))
    return zip_bytes([*members, ("archive/extra.pkl", _system_pickle(p))])


@case("torch/payload_then_garbage_data_pkl.pt", "nullifAI (ReversingLabs, Feb 2025)", needs="torch")
def payload_then_garbage_data_pkl(p: Payload) -> bytes:
    """A torch zip whose ``data.pkl`` runs the payload and then breaks (nullifAI)."""
    members = zip_members(makers.save(makers.tiny_state()))
    broken = b"\x80\x02" + call(global_("posix", "system"), p.shell) + b"0\xff"
    return zip_bytes([(n, broken if n.endswith("data.pkl") else d) for n, d in members])


def _npy_storage_checkpoint(p: Payload, *, big: bool) -> bytes:
    import numpy as np
    import torch

    npy = io.BytesIO()
    array = np.empty(1, dtype=object)
    array[0] = Reduce(os.system, p.shell)
    np.save(npy, array, allow_pickle=True)
    data = npy.getvalue()
    if big:  # a stored storage over CRC_SKIP_BYTES: opened without reading it whole
        data += b"\0" * (2**20 + 4 - len(data) % 4)
    data += b"\0" * (-len(data) % 4)
    weight = torch.frombuffer(bytearray(data), dtype=torch.float32).clone().reshape(1, -1)
    return makers.save({"fc.weight": weight, "fc.bias": torch.zeros(1)})


@case("torch/npy_in_a_storage.pt", "red team (issue 15): np.load reads a torch zip as an npz", needs="torch")
def npy_in_a_storage(p: Payload) -> bytes:
    """A float32 state dict whose ``fc.weight`` bytes are an object ``.npy``: torch reads floats,
    ``np.load(allow_pickle=True)`` opens the zip as an npz and unpickles ``archive/data/0``."""
    return _npy_storage_checkpoint(p, big=False)


@case("torch/npy_in_a_large_storage.pt", "red team (issue 15): the same past CRC_SKIP_BYTES", needs="torch")
def npy_in_a_large_storage(p: Payload) -> bytes:
    """The same with the storage over 1 MiB, so the scanner never reads it whole."""
    return _npy_storage_checkpoint(p, big=True)


# -- Zip parser differentials (THREATS 2.8, 2.16) ---------------------------------------------


def _swap_data_pkl(p: Payload, *, payload_first: bool) -> bytes:
    members = zip_members(makers.save(makers.tiny_state()))
    clean = dict(members)["archive/data.pkl"]
    evil = ("archive/data.pkl", _system_pickle(p))
    rest = [(n, d) for n, d in members if n != "archive/data.pkl"]
    if payload_first:
        return zip_bytes([evil, *rest, ("archive/data.pkl", clean)])
    return zip_bytes([("archive/data.pkl", clean), *rest, evil])


@case("zip/duplicate_data_pkl_payload_first.pt", "THREATS 2.16 (duplicate names)", needs="torch")
def duplicate_data_pkl_payload_first(p: Payload) -> bytes:
    """Two ``archive/data.pkl`` entries: PyTorch reads the first (payload), ``zipfile`` the last."""
    return _swap_data_pkl(p, payload_first=True)


@case("zip/duplicate_data_pkl_payload_last.pt", "THREATS 2.16 (duplicate names)", needs="torch")
def duplicate_data_pkl_payload_last(p: Payload) -> bytes:
    """Two ``archive/data.pkl`` entries with the payload in the last one."""
    return _swap_data_pkl(p, payload_first=False)


@case("zip/bad_crc.pt", "CVE-2025-1944 (bad CRC)", needs="torch")
def bad_crc(p: Payload) -> bytes:
    """The payload zip with a wrong CRC on ``data.pkl``: ``zipfile`` raises, PyTorch ignores it."""
    return patch_crc(_torch_payload_zip(p.shell), "archive/data.pkl", 0xDEADBEEF)


@case("zip/encrypted_flag.pt", "CVE-2025-1945 (flag bits)", needs="torch")
def encrypted_flag(p: Payload) -> bytes:
    """The payload zip with the 'encrypted' flag bit set on ``data.pkl``: PyTorch still reads it."""
    return patch_flags(_torch_payload_zip(p.shell), "archive/data.pkl", 0x0001)


@case("zip/local_central_name_mismatch.pt", "THREATS 2.8 (GHSA-w8jq-xcqf-f792)", needs="torch")
def local_central_name_mismatch(p: Payload) -> bytes:
    """Central directory says ``archive/data.txt`` while the local header says ``data.pkl``."""
    return rename_central(_torch_payload_zip(p.shell), "archive/data.pkl", "archive/data.txt")


@case("zip/pickle_prepended_polyglot.pt", "THREATS 5.4 (polyglot; CVE-2025-10156)", needs="torch")
def pickle_prepended_polyglot(p: Payload) -> bytes:
    """Payload pickle, then a clean torch zip: ``torch.load`` sees no zip magic and unpickles it."""
    return _system_pickle(p) + makers.save(makers.tiny_state())


@case("zip/traversal_member.zip", "issue 2 (absolute or '..' member paths)")
def traversal_member(p: Payload) -> bytes:
    """A zip with a payload pickle stored as ``../../model.pkl``."""
    return zip_bytes([("../../model.pkl", _system_pickle(p))])


@case("zip/safetensors_then_pickle.safetensors", "THREATS 5.4 (pickle appended after a safetensors)")
def safetensors_then_pickle(p: Payload) -> bytes:
    """A valid safetensors file with a payload pickle appended after the last tensor."""
    return makers.safetensors_bytes() + _system_pickle(p)


# -- Archives wrapping payloads (THREATS 2.9, 4.3) --------------------------------------------


@case("archives/torch_in_7z.7z", "nullifAI (7z-wrapped torch skipped)", needs="py7zr", incomplete_ok=True)
def torch_in_7z(p: Payload) -> bytes:
    """A 7z archive holding a payload torch zip (nullifAI); without py7zr the scan may fail closed."""
    import py7zr

    out = io.BytesIO()
    with py7zr.SevenZipFile(out, "w") as archive:
        archive.writestr(_torch_payload_zip(p.shell), "model.pt")
    return out.getvalue()


@case("archives/torch_in_tar.tar", "THREATS 4.3 (tar containers)", needs="torch")
def torch_in_tar(p: Payload) -> bytes:
    """A tar holding a payload torch zip."""
    return _tar({"model/pytorch_model.bin": _torch_payload_zip(p.shell)})


@case("archives/legacy_in_tar_gz.tar.gz", "THREATS 4.3 (tar.gz containers)", needs="torch")
def legacy_in_tar_gz(p: Payload) -> bytes:
    """A gzip-compressed tar holding a legacy payload checkpoint."""
    return _tar({"ckpt/model.ckpt": _torch_payload_legacy(p.shell)}, mode="w:gz")


@case("archives/pickle.pkl.gz", "THREATS 4.3 (gzip)")
def pickle_gz(p: Payload) -> bytes:
    """A gzip-compressed payload pickle."""
    return gzip.compress(_system_pickle(p), mtime=0)


@case("archives/pickle.pkl.bz2", "THREATS 4.3 (bzip2)")
def pickle_bz2(p: Payload) -> bytes:
    """A bzip2-compressed payload pickle."""
    return bz2.compress(_system_pickle(p))


@case("archives/pickle.pkl.xz", "THREATS 4.3 (xz)")
def pickle_xz(p: Payload) -> bytes:
    """An xz-compressed payload pickle."""
    return lzma.compress(_system_pickle(p))


@case("archives/nested_zip_in_zip.zip", "THREATS 4.3 (nested zips unsupported by ModelScan)", needs="torch")
def nested_zip_in_zip(p: Payload) -> bytes:
    """zip(zip(payload torch zip)): two levels of nesting."""
    inner = zip_bytes([("model.pt", _torch_payload_zip(p.shell))], compress=True)
    return zip_bytes([("bundle/inner.zip", inner)])


# -- Misleading extensions (THREATS 2.7) ------------------------------------------------------


@case("extensions/model.safetensors", "CVE-2025-1889 / GHSA-769v-p64c-89pr")
def pickle_as_safetensors(p: Payload) -> bytes:
    """A payload pickle named ``.safetensors`` (CVE-2025-1889)."""
    return _system_pickle(p)


@case("extensions/config.json", "CVE-2025-1889 (routing by name)")
def pickle_as_json(p: Payload) -> bytes:
    """A payload pickle named ``config.json``."""
    return _system_pickle(p)


@case("extensions/README.txt", "CVE-2025-1889 (routing by name)")
def pickle_as_txt(p: Payload) -> bytes:
    """A protocol-0 payload pickle (all printable text) named ``README.txt``."""
    return b"cposix\nsystem\n(V" + p.shell.encode() + b"\ntR."


@case("extensions/model.h5", "CVE-2025-1889 (routing by name)")
def pickle_as_h5(p: Payload) -> bytes:
    """A payload pickle named ``model.h5``."""
    return _system_pickle(p)


@case("extensions/model.gguf", "CVE-2025-1889 (routing by name)")
def pickle_as_gguf(p: Payload) -> bytes:
    """A payload pickle named ``model.gguf``."""
    return _system_pickle(p)


@case("extensions/legacy_torch.safetensors", "CVE-2025-1889 / CVE-2025-10155", needs="torch")
def legacy_as_safetensors(p: Payload) -> bytes:
    """A legacy payload torch checkpoint named ``.safetensors`` (CVE-2025-10155)."""
    return _torch_payload_legacy(p.shell)


@case("extensions/torch_zip.bin", "CVE-2025-1889 (a .bin that is a zip)", needs="torch")
def torch_zip_as_bin(p: Payload) -> bytes:
    """A payload torch zip named ``pytorch_model.bin``-style ``.bin``."""
    return _torch_payload_zip(p.shell)


# -- NumPy and joblib (THREATS 5.5) ------------------------------------------------------------


@case("numpy/object_array.npy", "THREATS 5.5 (.npy object arrays are pickles)")
def object_array_npy(p: Payload) -> bytes:
    """``numpy.save`` of an object array holding a reduce payload."""
    import numpy as np

    out = io.BytesIO()
    np.save(out, np.array([Reduce(os.system, p.shell)], dtype=object), allow_pickle=True)
    return out.getvalue()


@case("numpy/object_member.npz", "THREATS 5.5 (.npz members)")
def object_member_npz(p: Payload) -> bytes:
    """``numpy.savez`` with a numeric member and an object member holding the payload."""
    import numpy as np

    out = io.BytesIO()
    np.savez(out, weights=np.arange(4, dtype=np.float32), meta=np.array([Reduce(os.system, p.shell)], dtype=object))
    return out.getvalue()


def _joblib(p: Payload, compress: object) -> bytes:
    import joblib
    import numpy as np

    out = io.BytesIO()
    joblib.dump({"coef": np.ones(3), "hook": Reduce(os.system, p.shell)}, out, compress=compress)
    return out.getvalue()


@case("joblib/payload.joblib", "THREATS 4.3/5.5 (joblib)")
def joblib_plain(p: Payload) -> bytes:
    """``joblib.dump`` of a dict with arrays and a reduce payload."""
    return _joblib(p, 0)


@case("joblib/payload_zlib.joblib", "THREATS 5.5 (joblib zlib)")
def joblib_zlib(p: Payload) -> bytes:
    """The same, zlib-compressed (``compress=3``)."""
    return _joblib(p, 3)


@case("joblib/payload_lzma.joblib", "THREATS 5.5 (joblib lzma)")
def joblib_lzma(p: Payload) -> bytes:
    """The same, lzma-compressed."""
    return _joblib(p, ("lzma", 3))


@case("joblib/raw_zlib_stream.pkl.z", "THREATS 5.5 (zlib stream)")
def raw_zlib_stream(p: Payload) -> bytes:
    """A bare zlib stream of a payload pickle."""
    return zlib.compress(_system_pickle(p))


# -- Keras, ONNX, GGUF (THREATS 5.5; issue 2) ---------------------------------------------------


def _lambda_function(p: Payload) -> str:
    code = compile(f"lambda x: (__import__('os').system({p.shell!r}), x)[1]", "<corpus>", "eval")
    return base64.b64encode(marshal.dumps(code)).decode()


@case("keras/lambda_layer.keras", "THREATS 5.5 (Keras Lambda layer; CVE-2024-3660)")
def keras_lambda(p: Payload) -> bytes:
    """A Keras 3 zip whose config holds a ``Lambda`` layer with marshalled bytecode (CVE-2024-3660)."""
    layer = keras_layer(
        "Lambda", {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": _lambda_function(p)}}}
    )
    meta = json.dumps({"keras_version": "3.4.1", "date_saved": "2024-01-01@00:00:00"}).encode()
    return zip_bytes([("metadata.json", meta), ("config.json", keras_config([layer]))])


@case("keras/lambda_layer.h5", "THREATS 5.5 (Keras HDF5 Lambda; CVE-2024-3660)", needs="h5py")
def keras_h5_lambda(p: Payload) -> bytes:
    """A legacy Keras HDF5 file whose ``model_config`` holds a Lambda layer."""
    import h5py

    config = {
        "class_name": "Sequential",
        "config": {"layers": [{"class_name": "Lambda", "config": {"function": [_lambda_function(p), None, None]}}]},
    }
    out = io.BytesIO()
    with h5py.File(out, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["backend"] = "tensorflow"
    return out.getvalue()


@case("onnx/external_data_escape.onnx", "issue 2 (ONNX external data escaping the model dir)", needs="onnx")
def onnx_external_escape(p: Payload) -> bytes:
    """An ONNX model whose initializer's external data is ``../../../etc/hostname``."""
    return makers.onnx_model(external_location="../../../etc/hostname")


@case("gguf/chat_template_injection.gguf", "CVE-2024-34359 (GGUF chat template SSTI)")
def gguf_chat_template(p: Payload) -> bytes:
    """A GGUF whose ``tokenizer.chat_template`` escapes the Jinja sandbox (CVE-2024-34359)."""
    template = (
        "{% for m in messages %}{{ m.content }}{% endfor %}"
        "{{ self.__init__.__globals__.__builtins__.__import__('os').popen(" + repr(p.shell) + ").read() }}"
    )
    metadata = {"general.architecture": "llama", "general.name": "tiny", "tokenizer.chat_template": template}
    return gguf_bytes(metadata, {"token_embd.weight": [0.0, 1.0, 2.0, 3.0]})
