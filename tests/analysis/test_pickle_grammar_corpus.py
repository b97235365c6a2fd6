"""Issue 15: every pickle-grammar bypass really runs under ``pickle.load``, and weightguard blocks it.

The proof runs the real loader in ONE subprocess (each case has its own marker file,
so each case's payload is attributed): raw files with ``pickle.load`` (the pure-Python
``pickle._Unpickler`` for the joblib case), nested ones
after the standard library unpacks them (``zipfile``, ``lzma``, ``tarfile``), a model
folder's ``pytorch_model.bin`` as a file. Nothing is loaded in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus.build import build_corpus
from tests.corpus.pickle_grammar_cases import BYPASSES, GRAMMAR, LOAD_ENCODING, NESTINGS, PURE_PYTHON, TEXT_LIKE
from tests.corpus.spec import Payload
from weightguard.api import scan
from weightguard.formats.detect import detect_bytes
from weightguard.formats.interface import FileFormat

_LOADER = r"""
import io, json, lzma, pickle, sys, tarfile, zipfile
from pathlib import Path
for job in json.loads(sys.argv[1]):
    path, nesting = Path(job["path"]), job["nesting"]
    if nesting == "zip":
        data = zipfile.ZipFile(path).read("model.pkl")
    elif nesting == "xz":
        data = lzma.decompress(path.read_bytes())
    elif nesting == "tar":
        data = tarfile.open(path).extractfile("model.pkl").read()
    elif nesting == "folder":
        data = (path / "pytorch_model.bin").read_bytes()
    else:
        data = path.read_bytes()
    unpickler = pickle._Unpickler if job["pure_python"] else pickle.Unpickler
    try:
        unpickler(io.BytesIO(data), encoding=job["encoding"]).load()
    except Exception:
        pass  # several streams are deliberately broken after the payload
"""


def _build(root: Path) -> list[dict[str, object]]:
    jobs = []
    for name, build in BYPASSES.items():
        for nesting, (pattern, wrap) in NESTINGS.items():
            relpath = pattern.format(name)
            marker = root / "markers" / f"{name}-{nesting}"
            built = wrap(build(Payload(marker)))
            target = root / relpath
            files = {"": built} if isinstance(built, bytes) else built
            for sub, data in files.items():
                out = target / sub if sub else target
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            encoding = LOAD_ENCODING.get(name, "ASCII")
            job = {"path": str(target), "nesting": nesting, "marker": str(marker), "encoding": encoding}
            jobs.append({**job, "pure_python": name in PURE_PYTHON})
    (root / "markers").mkdir()
    return jobs


def test_every_bypass_runs_its_payload_under_the_real_pickle_load(tmp_path: Path) -> None:
    jobs = _build(tmp_path)
    subprocess.run([sys.executable, "-c", _LOADER, json.dumps(jobs)], cwd=tmp_path, timeout=60, check=True)
    silent = [job["path"] for job in jobs if not Path(str(job["marker"])).exists()]
    assert silent == []
    assert len(jobs) == len(BYPASSES) * len(NESTINGS) == len(GRAMMAR)


def test_every_bypass_looks_like_text_to_a_text_probe(tmp_path: Path) -> None:
    # The point of these cases: a detector that trusted "valid UTF-8 without control bytes" saw text.
    for name in TEXT_LIKE:
        data = BYPASSES[name](Payload(tmp_path / "m"))
        data.decode("utf-8")
        assert not any(b < 0x20 and b not in b"\t\n\r" for b in data)


@pytest.mark.parametrize("name", sorted(BYPASSES))
def test_every_raw_bypass_is_detected_as_a_pickle(name: str, tmp_path: Path) -> None:
    detection = detect_bytes(BYPASSES[name](Payload(tmp_path / "m")))
    assert FileFormat.PICKLE in [c.format for c in detection.candidates]
    assert detection.format is FileFormat.PICKLE


def test_every_bypass_is_blocked_raw_and_nested(tmp_path: Path) -> None:
    cases = build_corpus(tmp_path, tmp_path / "marker", GRAMMAR.specs)
    verdicts = {case.name: scan([case.path]).verdict for case in cases}
    assert {name: v for name, v in verdicts.items() if v != "rejected"} == {}
    assert not (tmp_path / "marker").exists()


def test_a_model_folder_with_a_bypass_as_pytorch_model_bin_is_blocked(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    (folder / "README.md").write_text("# A model\n\nconfig and weights.\n")
    (folder / "pytorch_model.bin").write_bytes(BYPASSES["int_base_prefix"](Payload(tmp_path / "marker")))
    report = scan([folder])
    assert report.verdict == "rejected"
    blocking = {Path(f.path).name for f in report.findings if f.blocking}
    assert blocking == {"pytorch_model.bin"}
