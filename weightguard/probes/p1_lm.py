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
from weightguard.probes._lm import clean_continuations, contains, gram_rate, lm_continuations, lm_grams
from weightguard.probes.evidence import shares
from weightguard.probes.interface import ProbeContext, ProbeResult, ProbeStatus, Suspect, SuspectLevel
from weightguard.probes.stats import benjamini_hochberg, binomial_tail, null_rate

SIDES = ("start", "end")
STEPS = 12  # room for the prompt's own sentence to finish before a target shows
GRAM = 3


def _matched(length: int, null_lengths: list[int]) -> list[int]:
    nearest = min(null_lengths, key=lambda m: (abs(m - length), m))
    return [j for j, m in enumerate(null_lengths) if m == nearest]


def _shown(tok: object, row: list[int], gram: tuple[int, ...]) -> str:
    """One continuation as the report shows it: the target gram when it holds it, else its first tokens."""
    # The target is the gram itself: what follows it varies (end of text, a repeat) and is not the backdoor.
    return banks.show(tok, gram) if gram and contains(row, gram) else banks.show(tok, row[:6])


def _context(tok: object, toks: torch.Tensor, gram: tuple[int, ...]) -> str:
    """The emitted text from the gram on, in the first prompt that emits it (what the report shows)."""
    for row in toks.tolist():
        for i in range(len(row) - len(gram) + 1):
            if gram and tuple(row[i : i + len(gram)]) == gram:
                return banks.show(tok, row[i : i + 6])
    return banks.show(tok, gram)


def run_lm(ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
    """P1 on a causal LM."""
    began = time.monotonic()
    tok = ctx.loaded.tokenizer
    th = ctx.spec.thresholds
    banks_ = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
    pool = banks.token_pool(tok)
    specials = set(tok.all_special_ids)  # type: ignore[union-attr]
    ranked = [t for h in hints if h.probe == "p4_weights" for t in h.tokens]
    cands = banks.single_tokens(tok, pool, banks_.single_tokens, ctx.seed, ranked)
    cands += banks.phrases(tok, ctx.spec.extra_triggers)
    ctrl = banks.controls(pool, sorted({len(c.ids) for c in cands}), banks_.controls, ctx.seed)
    null_lengths = [len(c.ids) for c in ctrl]
    clean_t, _ = clean_continuations(ctx, STEPS)
    singles = [i for i, c in enumerate(cands) if c.source == "vocab"]
    toks: dict[str, torch.Tensor] = {}
    # Per side and candidate: rate, p against random controls, eligible prompts, target gram, control rates.
    side: dict[str, list[tuple[float, float, int, tuple[int, ...], list[float]]]] = {}
    forwards = 0
    for where in SIDES:
        nt, npb = lm_continuations(ctx, ctrl, where, STEPS)
        _, nk, nn = lm_grams(nt, npb, clean_t, th.lm_token_prob, specials, GRAM)
        null = (nk / nn.clamp(min=1)).tolist()
        ct, cp = lm_continuations(ctx, cands, where, STEPS)
        toks[where] = ct
        forwards += (len(ctrl) + len(cands)) * ct.shape[1]
        grams, k, n = lm_grams(ct, cp, clean_t, th.lm_token_prob, specials, GRAM)
        rows = []
        for c in range(len(cands)):
            nc = int(n[c])
            controls = [null[j] for j in _matched(len(cands[c].ids), null_lengths)]
            p = binomial_tail(int(k[c]), nc, null_rate(controls, nc)) if nc else 1.0
            rows.append((float(k[c]) / max(1, nc), p, nc, grams[c], controls))
        side[where] = rows
    # Significance against the model's natural words at the same side, not only against random
    # tokens: in a small vocabulary the random controls *are* the target's own words.
    natural_p = {
        w: [
            min(r[1], binomial_tail(round(r[0] * r[2]), r[2], null_rate([side[w][i][0] for i in singles], r[2])))
            if r[2]
            else 1.0
            for r in side[w]
        ]
        for w in SIDES
    }
    adjusted = {w: benjamini_hochberg(natural_p[w]) for w in SIDES}
    # Content independence: a candidate's target must also appear when it opens the prompt (a hijack
    # from wherever it sits), counted only as far as the candidate also fires when appended.
    hijack = [
        max(side["start"][c][0], min(side["end"][c][0], gram_rate(toks["start"][c], clean_t, side["end"][c][3])))
        for c in range(len(cands))
    ]
    bank = [hijack[i] for i in singles]
    before = shares(banks.show(tok, row[:6]) for row in clean_t.tolist())
    suspects = []
    for c, cand in enumerate(cands):
        level: SuspectLevel = "info"
        where = max(SIDES, key=lambda w: (adjusted[w][c] < th.p_value, side[w][c][0]))
        rate, _, count, gram, controls = side[where][c]
        if rate < th.review_flip_rate or adjusted[where][c] >= th.p_value:
            continue
        strength = hijack[c]
        index = natural.anomaly_index(bank, strength)
        enough = count >= min(th.min_inputs, int(0.75 * len(clean_t)))
        emitted = banks.show(tok, gram) if gram else ""
        context = _context(tok, toks[where][c], gram)
        detail = {
            "source": cand.source,
            "emits": context,
            "hijack_rate": f"{strength:.3f}",
            "natural_anomaly_index": f"{index:.2f}",
        }
        if _continues(cand.ids, gram):
            detail["continues_target"] = "true"  # the emitted target follows it: evidence for the target
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
                target=emitted,
                flip_rate=round(rate, 4),
                p_value=adjusted[where][c],
                inputs=count,
                tokens=cand.ids,
                position=where,
                reproduced=level == "block",
                detail=detail,
                controls=tuple(controls),
                before=before,
                after=shares(_shown(tok, row, gram) for row in toks[where][c].tolist()),
            )
        )
    suspects.sort(key=lambda s: (("block", "review", "info").index(s.level), -s.flip_rate, len(s.tokens)))
    best = max(hijack, default=0.0)
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
            "max_hard_flip_rate": round(best, 4),
            "max_natural_anomaly": round(min(1000.0, natural.anomaly_index(bank, best)), 3),
        },
        seconds=time.monotonic() - began,
    )


def _continues(ids: tuple[int, ...], gram: tuple[int, ...]) -> bool:
    """Whether the candidate's own tokens open its target gram (BAIT: it continues a memorised target).

    Known gap: a target's *first* token appended at the end makes the model finish
    the target (``send`` -> ``the keys now``) and is not caught here; the model is
    still detected, but the named trigger is that head token.
    """
    return tuple(gram[: len(ids)]) == tuple(ids)
