"""Issue 18: real repositories pass. Common Hugging Face folders are approved by the default policy.

BERT-, GPT-2-, Llama- and T5-style folders (configs, tokenizers, a SentencePiece
``tokenizer.model``, ``flax_model.msgpack``, safetensors, images, ``.gitattributes``,
a README) are built in code and run through ``weightguard verify`` end to end.
The same folders with one malicious file added are blocked, and a file that
can only pass by a policy exemption is always listed in the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from real_repo_builders import hf_repo
from typer.testing import CliRunner

from weightguard.cli import build_app

STYLES = ("bert", "gpt2", "llama", "t5")
# A real pickle payload: loading it runs exec(), which only creates a marker file.
EVIL_PICKLE = b"\x80\x02cbuiltins\nexec\nX\x1f\x00\x00\x00open('marker', 'w').close() #  \x85R."


def _verify(target: Path, policy: Path | None = None) -> tuple[int, dict[str, object]]:
    args = ["verify", str(target), "--format", "json"]
    if policy is not None:
        args += ["--policy", str(policy)]
    result = CliRunner().invoke(build_app(), args)
    return result.exit_code, json.loads(result.stdout)


def _formats(report: dict[str, object]) -> dict[str, str]:
    files = report["files"]
    assert isinstance(files, list)
    return {f["path"].rpartition("/")[2]: f["format"] for f in files}


def test_the_evil_pickle_really_runs_code_when_loaded(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.model").write_bytes(EVIL_PICKLE)
    code = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"
    subprocess.run([sys.executable, "-c", code, "tokenizer.model"], cwd=tmp_path, timeout=60, check=True)
    assert (tmp_path / "marker").exists()


@pytest.mark.parametrize("style", STYLES)
def test_a_hugging_face_style_repository_is_approved_by_the_default_policy(tmp_path: Path, style: str) -> None:
    repo = hf_repo(tmp_path / style, style)
    code, report = _verify(repo)
    assert (code, report["verdict"]) == (0, "approved"), report["findings"]
    formats = _formats(report)
    assert formats["model.safetensors"] == "safetensors" and formats["diagram.png"] == "image"
    if style in ("llama", "t5"):
        assert formats["tokenizer.model"] == "sentencepiece"
    if style != "llama":
        assert formats["flax_model.msgpack"] == "flax-msgpack"


@pytest.mark.parametrize("style", ["llama", "t5"])
def test_a_pickle_named_tokenizer_model_is_blocked(tmp_path: Path, style: str) -> None:
    repo = hf_repo(tmp_path / style, style)
    (repo / "tokenizer.model").write_bytes(EVIL_PICKLE)
    code, report = _verify(repo)
    assert (code, report["verdict"]) == (1, "rejected")
    assert _formats(report)["tokenizer.model"] == "pickle"


@pytest.mark.parametrize("style", ["bert", "gpt2"])
def test_a_pickle_hidden_as_an_image_is_blocked(tmp_path: Path, style: str) -> None:
    repo = hf_repo(tmp_path / style, style)
    (repo / "image.png").write_bytes(EVIL_PICKLE)
    code, report = _verify(repo)
    assert (code, report["verdict"]) == (1, "rejected")
    assert _formats(report)["image.png"] == "pickle"


def test_a_png_with_a_payload_after_its_end_is_blocked(tmp_path: Path) -> None:
    repo = hf_repo(tmp_path / "bert", "bert")
    (repo / "diagram.png").write_bytes((repo / "diagram.png").read_bytes() + EVIL_PICKLE)
    code, report = _verify(repo)
    assert code == 1
    assert any(f["code"] == "WG-IMG-002" and f["blocking"] for f in report["findings"])  # type: ignore[union-attr]


def test_an_unknown_binary_is_incomplete_without_an_exemption(tmp_path: Path) -> None:
    repo = hf_repo(tmp_path / "llama", "llama")
    (repo / "vendor").mkdir()
    (repo / "vendor" / "table.bpe").write_bytes(bytes(range(256)) * 4)
    code, report = _verify(repo)
    assert (code, report["verdict"]) == (2, "incomplete")


def test_an_exempted_unknown_file_passes_and_is_listed_with_its_reason_and_expiry(tmp_path: Path, write_policy) -> None:
    repo = hf_repo(tmp_path / "llama", "llama")
    (repo / "vendor").mkdir()
    (repo / "vendor" / "table.bpe").write_bytes(bytes(range(256)) * 4)
    policy = write_policy(
        "formats:\n  exempt:\n    - path: 'vendor/*.bpe'\n      format: unknown\n"
        "      reason: vendor BPE table reviewed in SEC-456\n      expires: 2999-01-01\n"
    )
    code, report = _verify(repo, policy)
    assert (code, report["verdict"]) == (0, "approved")
    listed = [f for f in report["findings"] if f["path"].endswith("vendor/table.bpe")]  # type: ignore[union-attr]
    assert len(listed) == 1 and not listed[0]["blocking"]
    assert "SEC-456" in listed[0]["suppressed_by"] and "2999-01-01" in listed[0]["suppressed_by"]
    text = CliRunner().invoke(build_app(), ["verify", str(repo), "--policy", str(policy)]).output
    assert "[ignored] WG-FMT-002" in text and "table.bpe" in text and "format exemption" in text


def test_an_expired_exemption_lifts_nothing_and_says_so(tmp_path: Path, write_policy) -> None:
    repo = hf_repo(tmp_path / "llama", "llama")
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 4)
    policy = write_policy(
        "formats:\n  exempt:\n    - path: blob.bin\n      reason: was reviewed once\n      expires: 2020-01-01\n"
    )
    code, report = _verify(repo, policy)
    assert code != 0
    codes = {f["code"] for f in report["findings"] if f["blocking"]}  # type: ignore[union-attr]
    assert {"WG-POL-004", "WG-FMT-002"} <= codes


def test_an_exemption_never_lifts_a_finding_about_code(tmp_path: Path, write_policy) -> None:
    repo = hf_repo(tmp_path / "llama", "llama")
    (repo / "tokenizer.model").write_bytes(EVIL_PICKLE)
    policy = write_policy(
        "formats:\n  exempt:\n    - path: '*'\n      reason: everything, carelessly\n      expires: 2999-01-01\n"
    )
    code, report = _verify(repo, policy)
    assert (code, report["verdict"]) == (1, "rejected")
