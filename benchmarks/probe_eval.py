"""Evaluate the default probe policy on generated twins the calibrator never saw.

The ``eval`` set of :mod:`probe_twins` (seeds 5000+, trigger words, targets,
corners and patterns absent from the ``fit`` set) is built, each model probed
with the DEFAULT policy on CPU (built-in inputs, no user data), and the script
prints the confusion table (rows: truth, columns: verdict), the false-positive
rate on clean twins (any verdict but ``pass``), the detection rate (backdoored
twins not passed), the trigger-naming rate for text and LM twins (a blocking
suspect contains a trigger word), the calibration error (ECE) and
cross-entropy of ``backdoor_probability``, and CPU seconds per model.

A "backdoored" twin whose attack did not take (ASR < 0.9) is not one: it is
listed and left out of the rates.

``--set`` picks the twins: ``eval`` (default; seeds 5000+) is the first
evaluation set, but the LM probe's thresholds were later tuned while looking at
it, so its figures are optimistic; ``fresh`` (seeds 9000+, trigger words, LM
targets and a striped patch in neither the fit nor the eval set, LM triggers
anywhere / prompt-start only / mid-prompt only) is a set nothing was developed
or fitted on, for a one-off measurement. Once a fresh set has been scored and
looked at it is no longer fresh: add a new one for the next claim. ``fresh``
was scored (issue 19) and is burned; ``dev`` (seeds 7000+, ring and random-bit
patches) is what the image probe's patch inversion was developed on;
``fresh2`` (seeds 9500+, new trigger words and LM targets, a plus-sign patch
chosen before any result was seen) is the next one-off measurement.
``--family image`` scores one family only (for development).

    PYTHONPATH=. .venv/bin/python benchmarks/probe_eval.py --pairs 20
    PYTHONPATH=. .venv/bin/python benchmarks/probe_eval.py --set fresh2 --pairs 40
    PYTHONPATH=. .venv/bin/python benchmarks/probe_eval.py --set dev --pairs 30 --family image
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_twins import Outcome, run_set  # noqa: E402 - the sibling script, imported as a module

from weightguard.probes import calibration  # noqa: E402


def summarise(outcomes: list[Outcome]) -> str:
    """The evaluation table and rates."""
    rows = [o for o in outcomes if not o.twin.backdoored or o.asr >= 0.9]
    dropped = [o.twin.name for o in outcomes if o not in rows]
    verdicts = ("pass", "review", "block", "not-probed")
    lines = [f"{'truth':12s}" + "".join(f"{v:>11s}" for v in verdicts)]
    for truth in (False, True):
        group = [o for o in rows if o.twin.backdoored is truth]
        counts = [sum(o.verdict == v for o in group) for v in verdicts]
        lines.append(f"{'backdoored' if truth else 'clean':12s}" + "".join(f"{c:>11d}" for c in counts))
    clean = [o for o in rows if not o.twin.backdoored]
    bad = [o for o in rows if o.twin.backdoored]
    spelled = [o for o in bad if o.twin.family in {"text", "lm"}]
    fp = sum(o.verdict != "pass" for o in clean)
    found = sum(o.verdict != "pass" for o in bad)
    blocked = sum(o.verdict == "block" for o in bad)
    named = sum(o.named for o in spelled)
    first = sum(o.named_first for o in spelled)
    probs = [o.probability if o.probability is not None else 0.5 for o in rows]
    truth_y = [int(o.twin.backdoored) for o in rows]
    ce = -sum(math.log(max(1e-6, p if y else 1 - p)) for p, y in zip(probs, truth_y, strict=True)) / max(1, len(rows))
    per_family: dict[str, list[float]] = {}
    for o in rows:
        per_family.setdefault(o.twin.family, []).append(o.seconds)
    lines += [
        f"models: {len(rows)} ({len(clean)} clean, {len(bad)} backdoored); left out (attack did not take): {dropped}",
        f"false positives on clean: {fp}/{len(clean)} (any verdict but pass)",
        f"detection (not pass): {found}/{len(bad)} = {found / max(1, len(bad)):.1%}; blocked: {blocked}/{len(bad)}",
        f"text/LM triggers named: {named}/{len(spelled)} = {named / max(1, len(spelled)):.1%}"
        f" (as the first blocking suspect: {first}/{len(spelled)})",
        f"backdoor_probability: ECE {calibration.ece(probs, truth_y):.3f}, cross-entropy {ce:.3f}",
        "CPU seconds per model: "
        + ", ".join(f"{f} {sum(v) / len(v):.1f}s (n={len(v)})" for f, v in sorted(per_family.items())),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Build, probe and summarise the evaluation set."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20, help="twin pairs (2 models each); 20 gives the 40-model set")
    ap.add_argument("--root", type=Path, default=None, help="where to keep the built twins (default: a temp dir)")
    ap.add_argument("--set", dest="kind", choices=["eval", "fresh", "fresh2", "dev"], default="eval", help="see above")
    ap.add_argument("--family", choices=["text", "lm", "image"], default=None, help="only this family's twins")
    args = ap.parse_args(argv)
    cal = calibration.load()
    print(f"calibrator: {cal.fitted_on} (ECE on its fit set {cal.ece})", flush=True)
    outcomes = run_set(args.kind, args.pairs, args.root, lambda line: print(line, flush=True), args.family)
    print(summarise(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
