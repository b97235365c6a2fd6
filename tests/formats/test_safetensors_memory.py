"""Issue 15: a safetensors header is parsed once, within memory bounded by ``max_header_values``."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.formats.test_safetensors import CountingSource
from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.formats import safetensors as st
from weightguard.formats.detect import detect
from weightguard.formats.interface import Confidence, FileFormat
from weightguard.formats.safetensors import SafetensorsAnalyzer, count_json_values
from weightguard.limits import Limits
from weightguard.policy.load import parse_policy
from weightguard.policy.rules import compile_limits
from weightguard.sources.interface import BytesSource

REPO = Path(__file__).resolve().parents[2]


def _file(entries: int, metadata: dict[str, str] | None = None) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    header.update({f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(entries)})
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\x00" * entries


def _scan(data: bytes, limits: Limits) -> list[str]:
    ctx = ScanContext(limits=limits, pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
    return [f.code for f in SafetensorsAnalyzer().analyze(BytesSource(data), Location("m.safetensors"), ctx)]


def test_issue_15_a_header_over_max_header_values_is_a_limit_finding_and_is_never_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_parse(_raw: bytes) -> None:
        raise AssertionError("the header was parsed")

    monkeypatch.setattr(st, "parse_json", no_parse)
    ctx = ScanContext(limits=Limits(max_header_values=1000), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
    findings = list(SafetensorsAnalyzer().analyze(BytesSource(_file(100)), Location("m.safetensors"), ctx))
    assert [f.code for f in findings] == ["WG-LIM-001"]
    assert findings[0].evidence["resource"] == "max_header_values"
    assert "over 1000 JSON values" in findings[0].message


def test_a_header_within_max_header_values_is_validated_as_before() -> None:
    data = _file(100)  # 100 tensors of 11 values, the object itself and its keys: 1101 values
    assert _scan(data, Limits(max_header_values=1101)) == []
    assert _scan(data, Limits(max_header_values=1100)) == ["WG-LIM-001"]


def test_commas_and_colons_in_metadata_strings_are_not_counted_as_values() -> None:
    noisy = {"note": ",:{[" * 5000, "quoted": 'a \\" , : "' * 10}
    data = _file(10, noisy)
    assert _scan(data, Limits(max_header_values=200)) == []


def test_the_value_count_is_exact_for_strings_cut_by_the_reading_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "_WINDOW", 7)  # every string of any length crosses windows
    rng = random.Random(15)
    alphabet = 'ab,:{["\\'
    for _ in range(300):
        value = {
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(12))): [
                "".join(rng.choice(alphabet) for _ in range(rng.randrange(40))),
                rng.randrange(10),
                {"k": "".join(rng.choice(alphabet) for _ in range(rng.randrange(20)))},
            ]
            for _ in range(rng.randrange(1, 5))
        }
        raw = json.dumps(value).encode()
        expected = 1 + 7 * len(value)  # the object; per key: key, list, string, number, object, its key and string
        source = BytesSource(b"x" * 8 + raw)
        crude = count_json_values(source, 8, len(raw))  # every comma and colon, strings' too
        assert count_json_values(source, 8, len(raw), most=crude - 1) == expected


def test_issue_15_detection_reads_no_more_than_its_first_64_kib_of_a_large_header() -> None:
    data = _file(20_000)  # a header of about 1 MB
    source = CountingSource(data)
    detection = detect(source, Limits())  # type: ignore[arg-type]
    assert detection.format is FileFormat.SAFETENSORS
    assert detection.candidates[0].confidence is Confidence.LIKELY  # strong: the analyzer always runs
    assert sum(length for offset, length in source.reads if offset < len(data) - 20_000) <= 3 * 64 * 1024


def test_max_header_values_comes_from_the_policy_limits_section() -> None:
    text = "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nmetadata:\n  name: x\nspec:\n  limits:\n    max_header_values: 5000\n"
    assert compile_limits(parse_policy(text.encode(), "p.yaml").policy).max_header_values == 5000
    assert Limits().max_header_values == 1_000_000


_PEAK = """
import resource, sys
from pathlib import Path
from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.formats.detect import detect
from weightguard.formats.safetensors import SafetensorsAnalyzer
from weightguard.limits import Limits
from weightguard.sources.local import open_source
source = open_source(Path(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ctx = ScanContext(limits=Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
assert detect(source, Limits()).format.value == "safetensors"
codes = [f.code for f in SafetensorsAnalyzer().analyze(source, Location("m"), ctx)]
print(codes, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow
def test_issue_15_a_30_mb_header_of_many_tensors_costs_less_memory_than_twice_its_size(tmp_path: Path) -> None:
    # Before: about 12x the header's size (1.2 GB for 99 MB). The file's mapped pages count too.
    path = tmp_path / "many.safetensors"
    entries = 470_000
    parts = (f'"t{i:07d}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}' for i in range(entries))
    raw = ("{" + ",".join(parts) + "}").encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * entries)
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    codes, grown = proc.stdout.rsplit(" ", 1)
    assert codes == "['WG-LIM-001']"
    assert int(grown) < 2 * len(raw), f"peak RSS grew by {int(grown) / len(raw):.1f}x the header"
