"""Fixtures for the signing tests: deterministic tiny models and freshly generated keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).parent))

from fake_hashing import hasher as _hasher  # noqa: E402

from weightguard.signing.local import Hasher  # noqa: E402


@pytest.fixture
def hasher() -> Hasher:
    return _hasher()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small model directory with nested files, a README and git noise."""
    root = tmp_path / "toy-model"
    (root / "1_Pooling").mkdir(parents=True)
    (root / "config.json").write_text('{"hidden": 8}\n')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (root / "1_Pooling" / "config.json").write_text('{"pooling": "mean"}\n')
    (root / "README.md").write_text("# toy\n")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (root / "empty.txt").write_bytes(b"")
    return root


@pytest.fixture
def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
