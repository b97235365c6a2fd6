"""Issue 15: decompression is streamed to a temporary file, so a bomb cannot grow memory.

Each bomb inflates to 400 MiB of zeros under a policy that allows 256 MiB of
decompressed output (and any ratio, so the byte budget is what stops it). The
scan runs in a subprocess that reports its peak RSS (``resource.getrusage``):
output held in memory would pass 256 MiB; spooled output stays far below, and
the limit is reported by name.
"""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

_REPO = Path(__file__).resolve().parents[2]  # the subprocess must import this checkout's weightguard
_ZEROS = bytes(1 << 20)
_INFLATED_MIB = 400
_POLICY = """apiVersion: weightguard/v1alpha1
kind: VerificationPolicy
metadata: {name: bomb}
spec:
  limits:
    max_decompressed_bytes: 256MiB
    max_compression_ratio: 100000000
"""
_SCAN = """
import json, resource, sys
from pathlib import Path
from weightguard.api import scan
from weightguard.policy.load import load_policy
report = scan([Path(sys.argv[2])], load_policy(Path(sys.argv[1])))
print(json.dumps({"verdict": report.verdict,
                  "limits": [f.message for f in report.findings if f.code == "WG-LIM-001"]}))
"""
_MEASURE = """
import json, resource, subprocess, sys
run = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], capture_output=True, check=True)
result = json.loads(run.stdout)
result["peak"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps(result))
"""


def _gzip_bomb(path: Path) -> None:
    engine = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with path.open("wb") as out:
        for _ in range(_INFLATED_MIB):
            out.write(engine.compress(_ZEROS))
        out.write(engine.flush())


def _xz_bomb(path: Path) -> None:
    engine = lzma.LZMACompressor(preset=0)
    with path.open("wb") as out:
        for _ in range(_INFLATED_MIB):
            out.write(engine.compress(_ZEROS))
        out.write(engine.flush())


def _zip_bomb(path: Path) -> None:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("zeros.bin", "w", force_zip64=True) as out,
    ):
        for _ in range(_INFLATED_MIB):
            out.write(_ZEROS)


@pytest.mark.parametrize("build", [_gzip_bomb, _xz_bomb, _zip_bomb], ids=["gzip", "xz", "zip"])
def test_a_bomb_keeps_peak_memory_under_256_mib_and_reports_the_limit(
    build: Callable[[Path], None], tmp_path: Path
) -> None:
    bomb = tmp_path / "model.bin"
    build(bomb)
    assert bomb.stat().st_size < 2 << 20  # a small file ...
    policy = tmp_path / "policy.yaml"
    policy.write_text(_POLICY)
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, _SCAN, str(policy), str(bomb)],
        capture_output=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(_REPO)},
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    result = json.loads(run.stdout)
    assert result["verdict"] != "approved"
    assert any("max_decompressed_bytes" in m for m in result["limits"]), result
    assert result["peak"] < 256 << 20, f"peak RSS {result['peak'] / (1 << 20):.0f} MiB"  # ... that stays small
