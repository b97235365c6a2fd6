"""Pull cost (issue 17): ``verify oci://…`` against a plain download of the blobs plus ``verify`` on disk.

Starts the CNCF distribution registry (``/usr/bin/docker-registry``, no auth, plain
HTTP on 127.0.0.1) in a temporary folder, writes a ~1 GiB model (``--shards``
safetensors files of random bytes from a fixed seed, plus a config) and pushes it
as a ModelPack artifact (each weight file one ``.raw`` layer, the config in one
``.tar`` layer). Then, in one run, over the same artifact:

* **download**: the ``curl`` binary fetching every blob of the manifest to files
  (one ``curl`` process, one URL after another); when curl is missing, httpx
  streaming to files stands in and the output says so;
* **verify on disk**: ``weightguard verify DIR`` on the model folder that was pushed;
* **verify oci://**: ``weightguard verify oci://HOST/REPO@sha256:…`` (pull, unpack, verify).

Both verify runs are CLI subprocesses with the same policy, so interpreter start-up
counts on both sides; CPU seconds of those processes are printed too (the registry's own
work is not in them), since on a shared machine wall time also counts waiting. The page cache is warm for every step (the model was just
written; the registry's blobs were just pushed); nothing is dropped, since other
work shares the machine. The figure of merit is
``verify oci:// / (download + verify on disk)``; issue 17 asks for <= 1.25.

**Every step starts from the same memory state.** The download and the pull each write
1 GiB of new files; verify on disk writes nothing. On this project's machines (Firecracker
VMs with free page reporting: the guest hands pages it freed back to the host after about
two seconds) the cost of writing into the page cache depends on what was freed just before:
writing 1 GiB into a new file measured 0.20 s CPU (0.35 s wall) right after another 1 GiB
file was deleted, and 1.4-1.5 s CPU (2.3-2.7 s wall) once 5 s or more had passed. Run
back to back, whichever step comes soonest after a deletion is cheap. Each step therefore deletes what it
wrote as soon as it ends, and the next one starts ``--settle`` seconds later (default 5: all
steps pay for fresh pages, the case of a machine that pulls a model it has not seen);
``--settle 0`` gives the back-to-back order. Steps are interleaved over ``--repeat`` runs
and the best time of each is kept.

    .venv/bin/python benchmarks/oci_pull.py [--size-mb 1024] [--shards 4] [--repeat 3] [--settle 5]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REGISTRY_BIN = Path("/usr/bin/docker-registry")
BLOCK = 16 * 2**20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def build_model(root: Path, size_mb: int, shards: int) -> None:
    """Valid safetensors shards (one U8 tensor each) of random bytes, plus a config.json."""
    rng = np.random.default_rng(20261203)
    block = bytearray(rng.bytes(BLOCK))
    per_shard = size_mb * 2**20 // shards
    for s in range(shards):
        header = json.dumps({"weight": {"dtype": "U8", "shape": [per_shard], "data_offsets": [0, per_shard]}}).encode()
        header += b" " * (-len(header) % 8)
        with (root / f"model-{s + 1:05d}-of-{shards:05d}.safetensors").open("wb") as fh:
            fh.write(len(header).to_bytes(8, "little") + header)
            written = 0
            while written < per_shard:
                block[:8] = (s * 2**32 + written).to_bytes(8, "little")  # every block distinct
                n = min(BLOCK, per_shard - written)
                fh.write(memoryview(block)[:n])
                written += n
    (root / "config.json").write_text(json.dumps({"architectures": ["Bench"], "hidden_size": 64}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench\n"
    )
    process = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return process, f"127.0.0.1:{port}"
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the registry did not start") from None
            time.sleep(0.1)


def push_blob(client: httpx.Client, base: str, repo: str, path: Path | None, data: bytes = b"") -> tuple[str, int]:
    hasher = hashlib.sha256()
    if path is not None:
        with path.open("rb") as fh:
            while chunk := fh.read(BLOCK):
                hasher.update(chunk)
        size = path.stat().st_size
    else:
        hasher.update(data)
        size = len(data)
    digest = "sha256:" + hasher.hexdigest()
    started = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    location = httpx.URL(base).join(started.headers["location"]).copy_merge_params({"digest": digest})
    if path is not None:
        with path.open("rb") as fh:
            done = client.put(
                location, content=iter(lambda: fh.read(BLOCK), b""), headers={"Content-Length": str(size)}
            )
    else:
        done = client.put(location, content=data)
    assert done.status_code == 201, done.text
    return digest, size


def push_model(base: str, repo: str, model: Path) -> tuple[str, list[str]]:
    with httpx.Client(timeout=600) as client:
        layers = []
        for path in sorted(model.glob("*.safetensors")):
            digest, size = push_blob(client, base, repo, path)
            layers.append(
                {
                    "mediaType": "application/vnd.cncf.model.weight.v1.raw",
                    "digest": digest,
                    "size": size,
                    "annotations": {"org.cncf.model.filepath": path.name},
                }
            )
        packed = io.BytesIO()
        with tarfile.open(fileobj=packed, mode="w") as archive:
            info = tarfile.TarInfo("config.json")
            data = (model / "config.json").read_bytes()
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
        digest, size = push_blob(client, base, repo, None, packed.getvalue())
        layers.append({"mediaType": "application/vnd.cncf.model.weight.config.v1.tar", "digest": digest, "size": size})
        config = json.dumps({"descriptor": {"name": "bench"}}).encode()
        config_digest, config_size = push_blob(client, base, repo, None, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.cncf.model.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.cncf.model.config.v1+json",
                    "digest": config_digest,
                    "size": config_size,
                },
                "layers": layers,
            }
        ).encode()
        answer = client.put(
            f"{base}/v2/{repo}/manifests/bench", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert answer.status_code == 201, answer.text
        return "sha256:" + hashlib.sha256(manifest).hexdigest(), [layer["digest"] for layer in layers]


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def download(base: str, repo: str, blobs: list[str], dest: Path) -> tuple[float, str]:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    curl = shutil.which("curl")
    started = time.perf_counter()
    if curl is not None:
        args = [curl, "-sS", "--fail"]
        for blob in blobs:
            args += [f"{base}/v2/{repo}/blobs/{blob}", "-o", str(dest / blob.split(":")[1])]
        subprocess.run(args, check=True)
        return time.perf_counter() - started, "curl"
    with httpx.Client(timeout=600) as client:
        for blob in blobs:
            with (
                client.stream("GET", f"{base}/v2/{repo}/blobs/{blob}") as r,
                (dest / blob.split(":")[1]).open("wb") as fh,
            ):
                for chunk in r.iter_raw(BLOCK):
                    fh.write(chunk)
    return time.perf_counter() - started, "httpx streaming (curl is not installed)"


def verify(target: str, work: Path, *extra: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "weightguard", "verify", target, "--format", "json", *extra],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(work), "HOME": str(work)},
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"verify {target} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step, interleaved; the best is kept")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds between a step and the next (see the module docstring)"
    )
    args = parser.parse_args()
    if not REGISTRY_BIN.exists():
        raise SystemExit("docker-registry is not installed (ci/install-services.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="wg-oci-bench-") as tmp:
        folder = Path(tmp)
        model, work = folder / "model", folder / "work"
        model.mkdir()
        work.mkdir()
        build_model(model, args.size_mb, args.shards)
        process, host = start_registry(folder)
        try:
            base = f"http://{host}"
            digest, blobs = push_model(base, "bench/model", model)
            uri = f"oci://{host}/bench/model@{digest}"
            best: dict[str, float] = {}
            cpu: dict[str, float] = {}
            how = ""
            for _ in range(args.repeat):
                time.sleep(args.settle)
                before = children_cpu()
                seconds, how = download(base, "bench/model", blobs, folder / "curl")
                best["download"] = min(best.get("download", seconds), seconds)
                cpu["download"] = min(cpu.get("download", 1e9), children_cpu() - before)
                shutil.rmtree(folder / "curl")
                time.sleep(args.settle)
                before = children_cpu()
                seconds, local = verify(str(model), work)
                best["local"] = min(best.get("local", seconds), seconds)
                cpu["local"] = min(cpu.get("local", 1e9), children_cpu() - before)
                time.sleep(args.settle)
                before = children_cpu()
                seconds, pulled = verify(uri, work, "--insecure-registry", host)
                best["oci"] = min(best.get("oci", seconds), seconds)
                cpu["oci"] = min(cpu.get("oci", 1e9), children_cpu() - before)
            assert local["verdict"] == pulled["verdict"] == "approved", (local["verdict"], pulled["verdict"])
            assert local["subject"]["root_digest"] == pulled["subject"]["root_digest"]  # type: ignore[index]
        finally:
            process.terminate()
            process.wait(timeout=10)
    size = args.size_mb * 2**20
    print(
        f"artifact: {args.size_mb} MiB in {args.shards} safetensors layers + 1 tar layer, "
        f"best of {args.repeat}, {args.settle:g} s between steps"
    )
    print(
        f"download of the blobs ({how}): {best['download']:.2f} s wall ({size / best['download'] / 2**20:.0f} MiB/s), {cpu['download']:.2f} s CPU"
    )
    print(f"weightguard verify DIR:            {best['local']:.2f} s wall, {cpu['local']:.2f} s CPU")
    print(f"weightguard verify oci://…:        {best['oci']:.2f} s wall, {cpu['oci']:.2f} s CPU")
    ratio = best["oci"] / (best["download"] + best["local"])
    print(f"ratio verify oci:// / (download + verify DIR): {ratio:.2f} wall (goal <= 1.25)")
    # CPU seconds do not count time spent waiting for a busy machine (other jobs, the registry's own work).
    print(f"                                               {cpu['oci'] / (cpu['download'] + cpu['local']):.2f} CPU")


if __name__ == "__main__":
    main()
