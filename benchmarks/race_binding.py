"""Race: does ``verify --attest`` ever approve bytes it did not scan, or crash, while a model is rewritten?

A writer thread keeps changing ``model.pkl`` of a small model: a safe pickle
most of the time, a malicious one (``os.system``) in between, by rewriting it
in place, truncating it and writing it again, or renaming a new file over it.
Every state the file passes through (each version, each truncated prefix) is
kept, by sha256. Meanwhile ``verify`` runs again and again with an attestation
key, through the Python API the CLI uses and every ``--cli-every``-th time
through the real CLI in a subprocess. For each approval, every digest in the
report's subject (the digests the attestation signs) must be of a state the
writer produced and that state, scanned alone, must be approved: otherwise it
is a *bad approval*. A crash is an exception out of ``verify`` or a CLI exit
status other than 0, 1 or 2 (a SIGBUS is 135 or -7).

    .venv/bin/python benchmarks/race_binding.py [--iterations 1000] [--cli-every 50] [--seed 16]

``tests/integrity/test_race_binding.py`` runs the same harness for fewer iterations.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from weightguard.api import file_blocking, scan_file_bytes
from weightguard.errors import WeightguardError
from weightguard.pipeline import VerifyOptions, verify
from weightguard.policy.load import LoadedPolicy, load_builtin

# Never loaded: a pickle whose load would run os.system (the scanner must block it).
EVIL = b"\x80\x04cos\nsystem\n(S'touch weightguard-race-marker'\ntR."


def safe_version(n: int, length: int) -> bytes:
    """A harmless pickle of exactly ``length`` bytes (so in-place rewrites keep the size)."""
    head = pickle.dumps({"weights": [float(n)] * 8, "pad": ""}, protocol=4)
    data = pickle.dumps({"weights": [float(n)] * 8, "pad": "p" * (length - len(head))}, protocol=4)
    if len(data) != length:
        raise ValueError(f"cannot make a safe pickle of {length} bytes")
    return data


@dataclass
class Tally:
    """What the race produced."""

    iterations: int = 0
    approvals: int = 0
    bad_approvals: int = 0
    changed_findings: int = 0
    crashes: int = 0
    notes: list[str] = field(default_factory=list)


class Writer(threading.Thread):
    """Keeps rewriting, truncating and replacing ``path``; remembers every state it wrote."""

    def __init__(self, path: Path, seed: int) -> None:
        super().__init__(daemon=True, name="race-writer")
        self.path = path
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.states: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.versions = [safe_version(n, 256) for n in range(4)]
        self.evil = EVIL  # shorter than the safe versions: files shrink and grow

    def keep(self, data: bytes) -> None:
        with self.lock:
            self.states[hashlib.sha256(data).hexdigest()] = data

    def write(self, data: bytes) -> None:
        how = self.rng.choice(("in-place", "truncate", "replace"))
        if how == "replace":
            tmp = self.path.with_name(f".tmp-{self.rng.random()}")
            tmp.write_bytes(data)
            self.keep(data)
            tmp.replace(self.path)
            return
        fd = os.open(self.path, os.O_WRONLY)
        try:
            if how == "truncate":
                cut = self.rng.randrange(0, 256)
                current = self.path.read_bytes()
                self.keep(current[:cut])
                os.ftruncate(fd, cut)
            self.keep(data)
            os.pwrite(fd, data, 0)  # one small write: a reader sees the old or the new bytes
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        # Between the pwrite and the ftruncate a longer old file keeps its tail: that state too.
        self.keep(data)

    def run(self) -> None:
        while not self.stop.is_set():
            evil = self.rng.random() < 0.4
            data = self.evil if evil else self.rng.choice(self.versions)
            self.write_with_tail(data)
            time.sleep(self.rng.uniform(0, 0.003))

    def write_with_tail(self, data: bytes) -> None:
        try:
            before = self.path.read_bytes()
        except OSError:
            before = b""
        if len(before) > len(data):
            self.keep(data + before[len(data) :])
        self.write(data)


def make_key(folder: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = folder / "approver.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def judge_approval(files: dict[str, str], writer: Writer, loaded: LoadedPolicy, tally: Tally) -> None:
    """Count an approval, and a bad one unless every attested digest is of bytes that scan as approved."""
    tally.approvals += 1
    with writer.lock:
        states = dict(writer.states)
    for rel, digest in files.items():
        if rel != "model.pkl":
            continue
        data = states.get(digest)
        if data is None or file_blocking(scan_file_bytes(data, rel, loaded), loaded):
            tally.bad_approvals += 1
            tally.notes.append(
                f"approved {rel} sha256 {digest[:16]}: {'unknown bytes' if data is None else 'blocked bytes'}"
            )


def run_race(iterations: int, *, seed: int = 16, cli_every: int = 50, deadline_s: float | None = None) -> Tally:
    """Run the race for ``iterations`` verify runs (or until ``deadline_s``) and return the tally."""
    loaded = load_builtin("default")
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="wg-race-") as tmp:
        root = Path(tmp)
        model = root / "model"
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "race"}')
        writer = Writer(model / "model.pkl", seed)
        (model / "model.pkl").write_bytes(writer.versions[0])
        writer.keep(writer.versions[0])
        key = make_key(root)
        attestation = root / "model.att.json"
        writer.start()
        started = time.monotonic()
        try:
            for i in range(iterations):
                if deadline_s is not None and time.monotonic() - started > deadline_s:
                    break
                tally.iterations += 1
                if cli_every and i % cli_every == cli_every - 1:
                    _cli_once(model, key, attestation, writer, loaded, tally)
                    continue
                try:
                    report = verify(str(model), loaded, VerifyOptions(attest_key=key, attestation_path=attestation))
                except WeightguardError as exc:
                    tally.notes.append(f"verify refused the target: {exc.message}")
                    continue
                except Exception as exc:  # noqa: BLE001 - a crash is what this counts
                    tally.crashes += 1
                    tally.notes.append(f"crash: {exc!r}\n{traceback.format_exc()}")
                    continue
                if any(f.code == "WG-SRC-005" for f in report.findings):
                    tally.changed_findings += 1
                if report.verdict == "approved" and report.subject is not None:
                    judge_approval(dict(report.subject.files), writer, loaded, tally)
        finally:
            writer.stop.set()
            writer.join()
    return tally


def _cli_once(model: Path, key: Path, attestation: Path, writer: Writer, loaded: LoadedPolicy, tally: Tally) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "weightguard", "verify", str(model), "--attest", str(key)]
        + ["--attestation", str(attestation), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode not in (0, 1, 2):
        tally.crashes += 1
        tally.notes.append(f"CLI exit {done.returncode}: {done.stderr[-300:]!r}")
        return
    if done.returncode == 0:
        subject = json.loads(done.stdout).get("subject") or {}
        judge_approval(dict(subject.get("files") or {}), writer, loaded, tally)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--cli-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    started = time.perf_counter()
    tally = run_race(args.iterations, seed=args.seed, cli_every=args.cli_every)
    print(f"iterations:        {tally.iterations}")
    print(f"approvals:         {tally.approvals}")
    print(f"bad approvals:     {tally.bad_approvals}")
    print(f"crashes:           {tally.crashes}")
    print(f"changed findings:  {tally.changed_findings}")
    print(f"seconds:           {time.perf_counter() - started:.1f}")
    for note in tally.notes[:10]:
        print(f"  {note}")
    return 0 if tally.bad_approvals == 0 and tally.crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
