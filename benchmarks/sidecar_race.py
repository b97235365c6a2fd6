"""Race benchmark of the sidecar's target confinement (issue 16): swap a target for a link out of the root mid-job.

A real ``weightguard serve --model-root ROOT`` (real pipeline, built-in default
policy) runs in a subprocess. Each iteration copies ``sample_models/approved``
to ``ROOT/slotN/model``, submits it, and at a random moment (0 to ``--max-delay-ms``
after the submit) replaces either the target folder or its parent ``slotN`` by a
symbolic link to a folder *outside* the root holding a different model (a
distinct safetensors model, fixed seed: its file digests and folder path are
known). Half the iterations leave the link in place, half put the real folder
back after a further random moment (a swap the end-of-job check cannot see).
Counted: approvals, refusals (403 at admission), failed jobs, jobs whose report
names a path or file digest from outside the root (must be 0), and crashes
(the server exiting or a job failing with an internal error; must be 0).

    .venv/bin/python benchmarks/sidecar_race.py --iterations 1000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[1]
TOKEN = "race-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
_SERVE = (
    "import typer\nfrom weightguard.cli.serve import register\napp=typer.Typer()\nregister(app)\n"
    "@app.callback()\ndef r() -> None: pass\napp()"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def outside_model(folder: Path) -> list[str]:
    """Write the model that lives outside the root; return what would betray reading it (digests, its path)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(4242)
    save_file({"evil.weight": rng.standard_normal((32, 32)).astype(np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "outside-the-root"}')
    marks = [hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()]
    return [*marks, str(folder.parent), "outside-the-root"]


def _swap(slot: Path, outside_parent: Path, parent: bool, delay: float, restore: float | None) -> None:
    """Replace ``slot/model`` (or ``slot`` itself) by a link outside the root after ``delay`` s."""
    time.sleep(delay)
    victim = slot if parent else slot / "model"
    link_to = outside_parent if parent else outside_parent / "model"
    aside = victim.with_name(victim.name + ".aside")
    victim.rename(aside)
    victim.symlink_to(link_to)
    if restore is not None:
        time.sleep(restore)
        victim.unlink()
        aside.rename(victim)


def race(iterations: int, tmp: Path, max_delay_ms: float = 30.0, seed: int = 16) -> Counter[str]:
    """Run the race ``iterations`` times against a fresh sidecar; return the counts."""
    root = tmp / "root"
    root.mkdir()
    outside_parent = tmp / "outside"
    marks = outside_model(outside_parent / "model")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTGUARD_")}
    env.update(
        {
            "WEIGHTGUARD_API_TOKEN": TOKEN,
            "WEIGHTGUARD_QUEUE_SIZE": "64",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        }
    )
    args = ["serve", "--port", str(port), "--model-root", str(root), "--workers", "2"]
    args += ["--database", f"sqlite:///{tmp / 'race.db'}"]
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVE, *args], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    counts: Counter[str] = Counter()
    rng = random.Random(seed)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(iterations):
                slot = root / f"slot{i}"
                slot.mkdir()
                shutil.copytree(REPO / "sample_models" / "approved", slot / "model")
                parent = rng.random() < 0.5
                restore = rng.uniform(0, max_delay_ms) / 1000 if rng.random() < 0.5 else None
                swapper = threading.Thread(
                    target=_swap, args=(slot, outside_parent, parent, rng.uniform(0, max_delay_ms) / 1000, restore)
                )
                swapper.start()
                response = client.post("/v1/verifications", json={"target": str(slot / "model")}, headers=HEADERS)
                if response.status_code == 202:
                    job = response.json()["id"]
                    while True:
                        body = client.get(f"/v1/verifications/{job}", headers=HEADERS).json()
                        if body["status"] in ("done", "failed"):
                            break
                        time.sleep(0.005)
                    text = json.dumps(body)
                    if any(mark in text for mark in marks):
                        counts["leaked"] += 1
                    if body["status"] == "failed":
                        counts["failed"] += 1
                        counts["crashed"] += "internal error" in text
                        # Replaced during the job, a link met when the job pinned it, or caught between
                        # the swapper's rename and its symlink (the folder really was absent then).
                        swap_seen = any(m in text for m in ("while it was verified", "symbolic link", "does not exist"))
                        counts["failed: swap detected" if swap_seen else "failed: other"] += 1
                        if not swap_seen:
                            counts[f"other: {str(body.get('error'))[:200].replace(str(tmp), 'TMP')}"] += 1
                    else:
                        counts[str(body["report"]["verdict"])] += 1
                elif response.status_code in (403, 422):
                    counts["refused"] += 1
                else:
                    counts[f"http {response.status_code}"] += 1
                    counts["crashed"] += response.status_code >= 500
                swapper.join()
        counts["crashed"] += server.poll() is not None
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
    counts["iterations"] = iterations
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--max-delay-ms", type=float, default=30.0, help="swap at a random moment up to this late")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        counts = race(args.iterations, Path(tmp), args.max_delay_ms)
    wall = time.perf_counter() - started
    print(f"sidecar race: {args.iterations} iterations in {wall:.1f} s")
    keys = (
        "approved",
        "rejected",
        "incomplete",
        "failed",
        "failed: swap detected",
        "failed: other",
        "refused",
        "leaked",
        "crashed",
    )
    for key in keys:
        print(f"  {key}: {counts.get(key, 0)}")
    others = {k: v for k, v in counts.items() if k.startswith(("http ", "other: "))}
    if others:
        print(f"  other answers: {others}")
    raise SystemExit(1 if counts["leaked"] or counts["crashed"] else 0)


if __name__ == "__main__":
    main()
