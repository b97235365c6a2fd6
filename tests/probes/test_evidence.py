"""The evidence suspects carry for the report's plots: bounds and encodings, without any model."""

from __future__ import annotations

import base64
import io

import pytest
import torch

from weightguard.probes import evidence
from weightguard.probes.evidence import bounded_pair, label_shares, pixels, png_base64, shares, suspect_models
from weightguard.probes.interface import PatchEvidence, Suspect
from weightguard.probes.report import ProbeReport, SuspectModel

needs_matplotlib = pytest.mark.skipif(not evidence.png_available(), reason="matplotlib not installed ([probes] extra)")


def _patch_suspect(level: str = "block", side: int = 32) -> Suspect:
    return Suspect(
        probe="p1_insertion",
        kind="patch",
        level=level,  # type: ignore[arg-type]
        trigger="4x4 checker",
        target="horizontal",
        flip_rate=1.0,
        p_value=1e-9,
        inputs=64,
        patch=(1, 2, 4, "checker"),
        controls=(0.0, 0.1),
        image=PatchEvidence(side, side, torch.rand(3, 4, 4), torch.rand(3, side, side)),
    )


def test_shares_count_each_output_once_and_sum_to_one() -> None:
    assert shares(["a", "b", "a", "a"]) == {"a": 0.75, "b": 0.25}
    assert shares([]) == {}
    assert label_shares(torch.tensor([0, 2, 2, 5]), ["x", "y", "z"]) == {"x": 0.25, "z": 0.5, "LABEL_5": 0.25}


def test_bounded_pair_keeps_the_target_and_the_largest_outputs_with_the_rest_as_other() -> None:
    before = {f"w{i:02d}": 1 / 20 for i in range(20)}
    after = {"target": 0.9, **{f"w{i:02d}": 0.1 / 20 for i in range(20)}}
    cut_before, cut_after = bounded_pair(before, after, keep=("target",), k=5)
    assert list(cut_before) == list(cut_after) == ["target", "w00", "w01", "w02", "w03", "(other)"]
    assert cut_before["target"] == 0.0 and cut_after["target"] == 0.9
    assert cut_before["(other)"] == pytest.approx(16 / 20) and sum(cut_after.values()) == pytest.approx(1.0)


def test_the_other_bucket_never_merges_with_a_label_of_the_same_name() -> None:
    before, after = bounded_pair({"(other)": 0.5, "a": 0.3, "b": 0.2}, {"(other)": 0.1, "a": 0.8, "b": 0.1}, k=2)
    assert before == {"(other)": 0.5, "a": 0.3, "(other)*": 0.2}
    assert after == {"(other)": 0.1, "a": 0.8, "(other)*": 0.1}


def test_patch_pixels_are_rounded_and_left_out_beyond_the_size_bound() -> None:
    values = torch.tensor([[[0.12345, 1.5], [-1.0, 0.5]]])
    assert pixels(values) == [[[0.123, 1.0], [0.0, 0.5]]]
    side = evidence.MAX_PIXEL_SIDE + 1
    assert pixels(torch.zeros(3, side, side)) is None


@needs_matplotlib
@pytest.mark.parametrize("channels", [1, 3])
def test_the_sample_png_decodes_at_the_input_size(channels: int) -> None:
    from matplotlib.image import imread

    image = torch.rand(channels, 24, 40, generator=torch.Generator().manual_seed(0))
    encoded = png_base64(image)
    assert encoded is not None and encoded == png_base64(image)  # deterministic bytes
    decoded = imread(io.BytesIO(base64.b64decode(encoded)), format="png")
    assert decoded.shape[:2] == (24, 40)
    if channels == 3:  # 8-bit PNG: within half a step of the probe image
        assert abs(decoded[..., :3] - image.permute(1, 2, 0).numpy()).max() <= 1 / 255
    side = evidence.MAX_SAMPLE_SIDE + 1
    assert png_base64(torch.zeros(3, side, side)) is None


def test_without_matplotlib_the_sample_is_left_out_and_the_rest_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one patch here stands in for "matplotlib is not installed", which cannot be arranged in-process otherwise.
    monkeypatch.setattr(evidence, "png_available", lambda: False)
    [model] = suspect_models([_patch_suspect()])
    assert model.patch is not None and model.patch.sample_png is None
    assert model.patch.pixels is not None and model.patch.image_height == 32 and model.control_flip_rates == [0.0, 0.1]


@needs_matplotlib
def test_only_the_first_image_suspects_carry_a_sample_and_blocking_ones_come_first() -> None:
    suspects = [_patch_suspect("review") for _ in range(2)] + [_patch_suspect("block") for _ in range(3)]
    models = suspect_models(suspects)
    carrying = [i for i, m in enumerate(models) if m.patch is not None and m.patch.sample_png]
    assert carrying == [2, 3, 4] and len(carrying) == evidence.MAX_SAMPLES
    assert all(m.patch is not None and m.patch.pixels for m in models)


def test_more_controls_than_the_bound_are_cut_and_the_cut_is_stated() -> None:
    many = tuple(i / 5000 for i in range(evidence.MAX_CONTROLS + 7))
    suspect = Suspect("p1_insertion", "tokens", "review", "cf", "LABEL_1", 0.5, 1e-5, 40, controls=many)
    [model] = suspect_models([suspect])
    assert len(model.control_flip_rates) == evidence.MAX_CONTROLS
    assert model.detail["controls_shown"] == f"first {evidence.MAX_CONTROLS} of {len(many)}"


def test_a_report_written_before_the_evidence_fields_still_validates() -> None:
    old = {
        "model": "m",
        "verdict": "block",
        "exit_code": 1,
        "reason": "r",
        "suspects": [
            {
                "probe": "p1_insertion",
                "kind": "patch",
                "level": "block",
                "trigger": "t",
                "patch": {"top": 1, "left": 1, "size": 4, "pattern": "checker"},
                "target": "x",
                "flip_rate": 1.0,
                "p_value": 0.0,
                "inputs": 64,
                "reproduced": True,
            }
        ],
    }
    [suspect] = ProbeReport.model_validate(old).suspects
    assert suspect.control_flip_rates == [] and suspect.target_before == {} and suspect.target_after == {}
    assert suspect.patch is not None and suspect.patch.pixels is None and suspect.patch.sample_png is None
    assert isinstance(suspect, SuspectModel)
