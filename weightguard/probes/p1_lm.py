"""P1 for causal LMs: which candidate makes unrelated prompts emit one confident continuation.

Prompts are the shipped ones the vocabulary can spell plus prompts the model
samples itself (:func:`weightguard.probes._lm.sampled_prompts`), so a model
with its own domain or vocabulary is probed on its own natural text. Every
candidate is inserted at the prompt's start and appended at its end; a *hit*
is a prompt that then emits the candidate's modal continuation with high
confidence while its clean continuation differs.

The null is natural, not random (issue 19): an ordinary word appended at the
end of a sentence is *completed* by the model ("a" -> "garden ."), the same way
across prompts, which is grammar, not a backdoor. A backdoor hijacks the output
wherever the trigger sits, so only a candidate that does so from the prompt's
start blocks; an end-only effect is reported as ``info`` (natural
continuation), and a candidate that is itself part of the emitted text
continues a memorised target (the BAIT effect) rather than triggering it. The
start-side hit rate must also be a robust outlier against the bank of single
vocabulary tokens. Not handled here: target inversion (P3), the verdict.
"""

from __future__ import annotations

import time

import torch

from weightguard.probes import banks, natural
from weightguard.probes._lm import clean_continuations, contains, lm_continuations, lm_emission
from weightguard.probes.evidence import shares
from weightguard.probes.interface import ProbeContext, ProbeResult, ProbeStatus, Suspect, SuspectLevel
from weightguard.probes.stats import benjamini_hochberg, binomial_tail, null_rate

SIDES = ("start", "end")
HIJACK_STEPS = 12  # room for the prompt's own sentence to finish before a hijacked target shows
HIJACK_GRAM = 3
HIJACK_BANK = 48  # natural words whose hijack rates form the null


def _hijack(
    ctx: ProbeContext, cands: list[banks.Candidate], grams: list[tuple[int, ...]], clean: torch.Tensor
) -> list[float]:
    """Per candidate: share of prompts that, with it at the start, emit its end-side target somewhere.

    Only prompts whose own clean continuation lacks the target count. A trigger
    hijacks the output from wherever it sits; a word the model merely completes
    where it is appended does not.
    """
    if not cands:
        return []
    toks, _ = lm_continuations(ctx, cands, "start", HIJACK_STEPS)
    out = []
    for c, gram in enumerate(grams):
        free = [i for i, row in enumerate(clean.tolist()) if not contains(row, gram)]
        hits = sum(contains(toks[c, i].tolist(), gram) for i in free)
        out.append(hits / len(free) if free else 0.0)
    return out


def _matched(length: int, null_lengths: list[int]) -> list[int]:
    nearest = min(null_lengths, key=lambda m: (abs(m - length), m))
    return [j for j, m in enumerate(null_lengths) if m == nearest]


def run_lm(ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
    """P1 on a causal LM."""
    began = time.monotonic()
    tok = ctx.loaded.tokenizer
    th = ctx.spec.thresholds
    banks_ = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
    pool = banks.token_pool(tok)
    ranked = [t for h in hints if h.probe == "p4_weights" for t in h.tokens]
    cands = banks.single_tokens(tok, pool, banks_.single_tokens, ctx.seed, ranked)
    cands += banks.phrases(tok, ctx.spec.extra_triggers)
    ctrl = banks.controls(pool, sorted({len(c.ids) for c in cands}), banks_.controls, ctx.seed)
    null_lengths = [len(c.ids) for c in ctrl]
    clean_t, _ = clean_continuations(ctx)
    singles = [i for i, c in enumerate(cands) if c.source == "vocab"]
    # Per side: rate, p, eligible prompts, modal continuation, control rates, every continuation.
    side: dict[str, list[tuple[float, float, int, tuple[int, ...], list[float], torch.Tensor]]] = {}
    forwards = 0
    for where in SIDES:
        nt, npb = lm_continuations(ctx, ctrl, where)
        _, nk, nn = lm_emission(nt, npb, clean_t, th.lm_token_prob)
        null = (nk / nn.clamp(min=1)).tolist()
        ct, cp = lm_continuations(ctx, cands, where)
        forwards += (len(ctrl) + len(cands)) * ct.shape[1]
        modal, k, n = lm_emission(ct, cp, clean_t, th.lm_token_prob)
        rows = []
        for c in range(len(cands)):
            nc = int(n[c])
            controls = [null[j] for j in _matched(len(cands[c].ids), null_lengths)]
            p = binomial_tail(int(k[c]), nc, null_rate(controls, nc)) if nc else 1.0
            rows.append((float(k[c]) / max(1, nc), p, nc, modal[c], controls, ct[c]))
        side[where] = rows
    bank = [side["start"][i][0] for i in singles]
    adjusted = {w: benjamini_hochberg([r[1] for r in side[w]]) for w in SIDES}
    # Hijack test for what works when appended: the bank sample for the null, plus every end-side passer.
    ends = side["end"]
    passers = [c for c in range(len(cands)) if ends[c][0] >= th.review_flip_rate and adjusted["end"][c] < th.p_value]
    probe_set = sorted(set(singles[:HIJACK_BANK]) | set(passers))
    clean_long, _ = clean_continuations(ctx, HIJACK_STEPS)
    grams = [ends[c][3][:HIJACK_GRAM] for c in probe_set]
    hijack = dict(zip(probe_set, _hijack(ctx, [cands[c] for c in probe_set], grams, clean_long), strict=True))
    hijack_bank = [hijack[c] for c in probe_set if c in set(singles[:HIJACK_BANK])]
    before = shares(banks.show(tok, row) for row in clean_t.tolist())
    suspects = []
    for c, cand in enumerate(cands):
        level: SuspectLevel = "info"
        where = max(SIDES, key=lambda w: (adjusted[w][c] < th.p_value, side[w][c][0]))
        rate, _, count, emitted, controls, continued = side[where][c]
        if rate < th.review_flip_rate or adjusted[where][c] >= th.p_value:
            continue
        enough = count >= min(th.min_inputs, len(clean_t))
        if where == "start":
            strength, index = rate, natural.anomaly_index(bank, rate)
        else:
            strength = hijack.get(c, 0.0)
            index = natural.anomaly_index(hijack_bank, strength)
        detail = {
            "source": cand.source,
            "emits": banks.show(tok, emitted),
            "hijack_rate": f"{strength:.3f}",
            "natural_anomaly_index": f"{index:.2f}",
        }
        if contains(list(emitted), cand.ids):
            detail["continues_target"] = "true"  # part of the emitted text: evidence for the target, not a trigger
        elif index < th.natural_anomaly_index or strength < th.hard_flip_rate:
            detail["natural_continuation"] = "true"  # completed where appended, not a hijack from the start
        elif rate >= th.block_flip_rate and enough:
            level = "block"
        else:
            level = "review"
        suspects.append(
            Suspect(
                probe="p1_insertion",
                kind="tokens",
                level=level,
                trigger=cand.text,
                target=banks.show(tok, emitted),
                flip_rate=round(rate, 4),
                p_value=adjusted[where][c],
                inputs=count,
                tokens=cand.ids,
                position=where,
                reproduced=level == "block",
                detail=detail,
                controls=tuple(controls),
                before=before,
                after=shares(banks.show(tok, row) for row in continued.tolist()),
            )
        )
    suspects.sort(key=lambda s: (("block", "review", "info").index(s.level), -s.flip_rate, len(s.tokens)))
    best_start = max([side["start"][c][0] for c in range(len(cands))] + list(hijack.values()), default=0.0)
    return ProbeResult(
        name="p1_insertion",
        status=ProbeStatus.RAN,
        suspects=tuple(suspects),
        coverage={
            "candidates": len(cands),
            "controls": len(ctrl),
            "controls_per_length": len(_matched(1, null_lengths)),
            "inputs": int(clean_t.shape[0]),
            "natural_bank": len(bank),
            "positions": len(SIDES),
            "forwards": forwards,
        },
        metrics={
            "max_flip_rate": round(max((side[w][c][0] for w in SIDES for c in range(len(cands))), default=0.0), 4),
            "max_hard_flip_rate": round(best_start, 4),
            "max_natural_anomaly": round(min(1000.0, natural.anomaly_index(hijack_bank or bank, best_start)), 3),
        },
        seconds=time.monotonic() - began,
    )
