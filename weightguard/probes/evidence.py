"""Turn a suspect's raw evidence into the bounded report fields the HTML plots draw.

Probes hand over what their statistics actually used: the random controls'
flip rates, full output distributions before and after the trigger, and for
images the patch tensor plus one clean probe image. This module bounds all of
it at the report boundary (at most :data:`MAX_CONTROLS` control rates,
:data:`TOP_K` outputs plus one "other" bucket, patch pixels up to
:data:`MAX_PIXEL_SIDE` a side, a PNG sample only for inputs up to
:data:`MAX_SAMPLE_SIDE` a side and only for the first :data:`MAX_SAMPLES`
image suspects), so a report stays small whatever the model. PNG encoding uses
matplotlib (the ``[probes]`` extra); without it the sample is simply left out.
Not handled here: computing any statistic, or deciding the verdict.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import torch

from weightguard.probes.interface import PatchEvidence, Suspect
from weightguard.probes.report import PatchModel, SuspectModel
from weightguard.report.html_plots import plots_available

MAX_CONTROLS = 1000  # the policy's largest sensible bank; more are summarised in ``detail``
TOP_K = 10
MAX_PIXEL_SIDE = 64  # 3 x 64 x 64 values at 3 decimals is about 70 kB of JSON, the most one patch may cost
MAX_SAMPLE_SIDE = 256
MAX_SAMPLES = 3
OTHER = "(other)"


def shares(outputs: Iterable[str]) -> dict[str, float]:
    """The share of each distinct output among ``outputs`` (labels or continuation texts)."""
    counts = Counter(outputs)
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def label_shares(predicted: torch.Tensor, labels: Sequence[str]) -> dict[str, float]:
    """The share of inputs whose argmax prediction is each label (``predicted``: label indices)."""
    return shares(labels[i] if 0 <= i < len(labels) else f"LABEL_{i}" for i in predicted.reshape(-1).tolist())


def bounded_pair(
    before: Mapping[str, float], after: Mapping[str, float], keep: Sequence[str] = (), k: int = TOP_K
) -> tuple[dict[str, float], dict[str, float]]:
    """Keep the same ``k`` keys in both distributions (``keep`` first, then the largest), the rest as "other".

    Both sides share one key set so a plot compares like with like; the bucket is
    named so that it cannot collide with a real (model-chosen) label.
    """
    ranked = sorted(set(before) | set(after), key=lambda key: (-max(before.get(key, 0.0), after.get(key, 0.0)), key))
    chosen = list(dict.fromkeys([*(x for x in keep if x in before or x in after), *ranked]))[:k]
    other = OTHER
    while other in chosen:
        other += "*"

    def rest(dist: Mapping[str, float]) -> float:
        return sum(v for key, v in dist.items() if key not in chosen)

    # The bucket goes on both sides when either needs it: one key set (0.0 where a side has no rest).
    bucket = rest(before) > 0 or rest(after) > 0

    def cut(dist: Mapping[str, float]) -> dict[str, float]:
        out = {key: round(dist.get(key, 0.0), 4) for key in chosen}
        if bucket:
            out[other] = round(rest(dist), 4)
        return out

    return (cut(before), cut(after)) if chosen else ({}, {})


def pixels(values: torch.Tensor) -> list[list[list[float]]] | None:
    """A patch's pixels (C x size x size, rounded to 3 decimals), or None when it is too large to carry."""
    if values.dim() != 3 or max(values.shape[1:]) > MAX_PIXEL_SIDE:
        return None
    # Round Python floats (float64), not float32 tensors: 0.123 must reach the JSON as 0.123, not 0.12300000339.
    grid: list[list[list[float]]] = values.detach().double().clamp(0, 1).cpu().tolist()
    return [[[round(v, 3) for v in row] for row in channel] for channel in grid]


def png_available() -> bool:
    """Whether matplotlib (and so PNG encoding) is installed."""
    return plots_available()


def png_base64(image: torch.Tensor) -> str | None:
    """Base64 PNG of a (C, H, W) image in [0, 1]; None without matplotlib or beyond :data:`MAX_SAMPLE_SIDE`."""
    if image.dim() != 3 or max(image.shape[1:]) > MAX_SAMPLE_SIDE or not png_available():
        return None
    from matplotlib.image import imsave  # noqa: PLC0415 - optional dependency ([probes] extra)

    array = image.detach().float().clamp(0, 1).cpu()
    buf = io.BytesIO()
    # No "Software" text chunk (matplotlib drops a key set to None): the bytes do not depend on its version.
    quiet = {"Software": None}
    if array.shape[0] >= 3:
        imsave(buf, array[:3].permute(1, 2, 0).numpy(), format="png", metadata=quiet)  # type: ignore[arg-type]
    else:
        imsave(buf, array[0].numpy(), format="png", cmap="gray", vmin=0.0, vmax=1.0, metadata=quiet)  # type: ignore[arg-type]
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _patch_model(s: Suspect, with_sample: bool) -> PatchModel | None:
    if s.patch is None:
        return None
    top, left, size, pattern = s.patch
    image: PatchEvidence | None = s.image
    if image is None:
        return PatchModel(top=top, left=left, size=size, pattern=pattern)
    return PatchModel(
        top=top,
        left=left,
        size=size,
        pattern=pattern,
        image_height=image.height,
        image_width=image.width,
        pixels=pixels(image.values),
        sample_png=png_base64(image.sample) if with_sample else None,
    )


def suspect_model(s: Suspect, *, with_sample: bool = True) -> SuspectModel:
    """The report form of ``s`` with its evidence bounded (``with_sample``: encode the PNG sample)."""
    detail = dict(s.detail)
    if len(s.controls) > MAX_CONTROLS:
        detail["controls_shown"] = f"first {MAX_CONTROLS} of {len(s.controls)}"
    before, after = bounded_pair(s.before, s.after, keep=(s.target,))
    return SuspectModel(
        probe=s.probe,
        kind=s.kind,
        level=s.level,
        trigger=s.trigger,
        tokens=list(s.tokens),
        patch=_patch_model(s, with_sample),
        position=s.position,
        target=s.target,
        flip_rate=s.flip_rate,
        p_value=s.p_value,
        inputs=s.inputs,
        reproduced=s.reproduced,
        detail=detail,
        control_flip_rates=[round(v, 4) for v in s.controls[:MAX_CONTROLS]],
        target_before=before,
        target_after=after,
    )


def suspect_models(suspects: Sequence[Suspect]) -> list[SuspectModel]:
    """Report forms of ``suspects`` (order kept); only the first :data:`MAX_SAMPLES` image suspects get a PNG.

    Blocking suspects are served first, so the patch a reader most needs to see is drawn on a real image.
    """
    order = sorted(range(len(suspects)), key=lambda i: ("block", "review", "info").index(suspects[i].level))
    sampled = set([i for i in order if suspects[i].image is not None][:MAX_SAMPLES])
    return [suspect_model(s, with_sample=i in sampled) for i, s in enumerate(suspects)]
