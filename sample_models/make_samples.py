"""Generate the two small sample models the README's main command scans.

- ``approved/``: a tiny safetensors model with its config and tokenizer.
- ``blocked/``: a PyTorch-layout zip checkpoint named ``pytorch_model.bin``
  whose ``data.pkl`` would call ``builtins.exec`` when unpickled. The payload is
  harmless (it only prints a line) and weightguard never executes it.

Deterministic: fixed seed, fixed zip timestamps. Run: ``python sample_models/make_samples.py``.
Needs numpy and safetensors only (no torch).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save

HERE = Path(__file__).resolve().parent
FIXED_TIME = (2026, 1, 1, 0, 0, 0)


def make_approved(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    tensors = {
        "embeddings.weight": rng.standard_normal((64, 16), dtype=np.float32),
        "classifier.weight": rng.standard_normal((2, 16), dtype=np.float32),
        "classifier.bias": np.zeros(2, dtype=np.float32),
    }
    (out / "model.safetensors").write_bytes(save(tensors, metadata={"format": "pt"}))
    config = {"architectures": ["TinyClassifier"], "hidden_size": 16, "vocab_size": 64, "num_labels": 2}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    vocab = {f"tok{i}": i for i in range(64)}
    tokenizer = {"version": "1.0", "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "tok0"}}
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, indent=1) + "\n")


def _payload_pickle() -> bytes:
    # Protocol 2 pickle: builtins.exec("print('...')") -- what a poisoned checkpoint does, harmlessly.
    code = b"print('weightguard sample payload: this line would run if the file were unpickled')"
    return (
        b"\x80\x02"
        + b"cbuiltins\nexec\n"
        + b"X" + len(code).to_bytes(4, "little") + code
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE
        + b"."  # STOP
    )


def make_blocked(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    target = out / "pytorch_model.bin"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in (
            ("archive/data.pkl", _payload_pickle()),
            ("archive/byteorder", b"little"),
            ("archive/version", b"3\n"),
        ):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            zf.writestr(info, data)
    config = {"architectures": ["TinyClassifier"], "hidden_size": 16}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    make_approved(HERE / "approved")
    make_blocked(HERE / "blocked")
