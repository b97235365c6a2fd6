"""P1: batched candidate-trigger insertion for text classifiers and causal LMs.

Every candidate (vocabulary tokens, trigger phrases, hints from other probes,
then pairs of the strongest tokens) is inserted into every clean probe input at
the start, the end and a seeded random position, all in batched forwards built
by index arithmetic. Classifiers: a *flip* is a confidently classified input
whose prediction moves to the target label. Causal LMs: a flip is a prompt
that, with the candidate appended (prefix KV cache reused) or prepended, emits
the candidate's modal continuation with high confidence while its clean
continuation differs. Each candidate's flip rate is tested against random-token
controls (binomial tail at the controls' 95th percentile, BH-corrected), and a
block-level candidate must reproduce on two disjoint halves of the inputs with
fresh random positions. Not handled here: images (:mod:`weightguard.probes.image`)
or the verdict.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from weightguard.probes import banks
from weightguard.probes._lm import clean_continuations, lm_continuations, lm_emission
from weightguard.probes.batching import Items, MicroBatcher, classify, tokenise
from weightguard.probes.evidence import label_shares, shares
from weightguard.probes.interface import (
    Family,
    ProbeContext,
    ProbeResult,
    ProbeStatus,
    Suspect,
    SuspectLevel,
    check_budget,
)
from weightguard.probes.stats import benjamini_hochberg, binomial_tail, null_rate

POSITIONS = ("start", "end", "random")


@dataclass(frozen=True, slots=True)
class Scores:
    """Per candidate, position and target: flips and eligible inputs (k, n), shape (C, P, T).

    ``pred`` keeps every triggered input's top label, shape (C, N, P), for the
    suspects' output distributions.
    """

    k: torch.Tensor
    n: torch.Tensor
    pred: torch.Tensor

    @property
    def rate(self) -> torch.Tensor:
        """Flip rates, 0 where nothing was eligible."""
        return self.k / self.n.clamp(min=1)


def _items(data_len: torch.Tensor, n_cands: int, seed: int, positions: tuple[str, ...]) -> Items:
    n = len(data_len)
    rng = torch.Generator().manual_seed(seed)
    cand = torch.arange(n_cands).repeat_interleave(n * len(positions))
    inp = torch.arange(n).repeat_interleave(len(positions)).repeat(n_cands)
    ats = []
    for p in positions:
        if p == "start":
            ats.append(torch.zeros(n, dtype=torch.long))
        elif p == "end":
            ats.append(data_len.clone())
        else:
            ats.append((torch.rand(n, generator=rng) * (data_len + 1).float()).long())
    at = torch.stack(ats, 1).reshape(-1).repeat(n_cands)
    return Items(cand, inp, at)


class _ClassifierRun:
    """State of one P1 run on a sequence classifier."""

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx
        tok = ctx.loaded.tokenizer
        model = ctx.loaded.model
        self.banks = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
        max_pos = int(getattr(model.config, "max_position_embeddings", 512))
        self.data = tokenise(tok, ctx.texts[: self.banks.inputs], max_body=max(8, min(max_pos - 24, 128)))
        self.pad = int(tok.pad_token_id)  # type: ignore[union-attr]
        hidden = int(getattr(model.config, "hidden_size", 768))
        self.batcher = MicroBatcher(ctx.device, ctx.spec.micro_batch_tokens, hidden)
        clean = self._probs([banks.Candidate("", (), "clean")], ctx.seed, ("start",))[0, :, 0]
        conf, self.pred = clean.max(-1)
        self.confident = conf >= ctx.spec.thresholds.min_clean_confidence
        labels = clean.shape[-1]
        self.eligible = torch.stack([self.confident & (self.pred != t) for t in range(labels)], 1)  # (N, T)
        self.forwards = 0

    def _probs(self, cands: list[banks.Candidate], seed: int, positions: tuple[str, ...]) -> torch.Tensor:
        trig, trig_len = banks.table(cands, self.pad)
        items = _items(self.data.lengths, len(cands), seed, positions)
        probs = classify(self.ctx.loaded.model, self.data, trig, trig_len, items, self.batcher, pad=self.pad)
        return probs.reshape(len(cands), self.data.size, len(positions), -1)

    def scores(self, cands: list[banks.Candidate], seed: int, positions: tuple[str, ...] = POSITIONS) -> Scores:
        check_budget(self.ctx, "P1 insertion")
        probs = self._probs(cands, seed, positions)
        self.forwards += probs.shape[0] * probs.shape[1] * probs.shape[2]
        labels = probs.shape[-1]
        hit = probs.argmax(-1)[..., None] == torch.arange(labels)  # (C, N, P, T)
        elig = self.eligible[None, :, None, :]
        k = (hit & elig).sum(1).float()
        n = elig.sum(1).expand_as(k).float()
        return Scores(k, n, probs.argmax(-1))


def _best(scores: Scores) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = scores.rate.flatten(1)
    best = flat.argmax(1)
    n_t = scores.rate.shape[2]
    return best // n_t, best % n_t, flat.gather(1, best[:, None])[:, 0]


def _matched(length: int, null_lengths: list[int]) -> list[int]:
    """Indices of the controls whose length is nearest to ``length`` (length-matched null)."""
    nearest = min(null_lengths, key=lambda m: (abs(m - length), m))
    return [j for j, m in enumerate(null_lengths) if m == nearest]


def _controls(null: Scores, rows: list[int], pos: int, target: int) -> list[float]:
    """The control flip rates a candidate is tested against: length-matched rows, same position and target."""
    rates: list[float] = null.rate[rows, pos, target].tolist()
    return rates


def _pvalues(scores: Scores, null: Scores, lengths: list[int], null_lengths: list[int]) -> torch.Tensor:
    pos, tgt, _ = _best(scores)
    out = []
    for c in range(scores.k.shape[0]):
        p, t = int(pos[c]), int(tgt[c])
        n = int(scores.n[c, p, t])
        p0 = null_rate(_controls(null, _matched(lengths[c], null_lengths), p, t), n)
        out.append(binomial_tail(int(scores.k[c, p, t]), n, p0) if n else 1.0)
    return torch.tensor(out, dtype=torch.float64)


def run_classifier(ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
    """P1 on a sequence classifier."""
    start = time.monotonic()
    run = _ClassifierRun(ctx)
    th = ctx.spec.thresholds
    tok = ctx.loaded.tokenizer
    pool = banks.token_pool(tok)
    ranked = [t for h in hints if h.probe == "p4_weights" for t in h.tokens]
    cands = banks.single_tokens(tok, pool, run.banks.single_tokens, ctx.seed, ranked)
    cands += banks.phrases(tok, ctx.spec.extra_triggers)
    cands += [
        banks.Candidate(h.trigger, h.tokens, "hint")
        for h in hints
        if h.probe == "p2_inversion" and h.kind == "tokens" and h.tokens
    ]
    cands = list({c.ids: c for c in reversed(cands)}.values())[::-1]  # one candidate per id sequence, first wins
    ctrl = banks.controls(pool, sorted({2, *(len(c.ids) for c in cands)}), run.banks.controls, ctx.seed)
    null = run.scores(ctrl, ctx.seed + 1)
    scored = run.scores(cands, ctx.seed)
    # Multi-word round: pairs of the strongest singles that do not fire alone.
    _, _, rate = _best(scored)
    singles = [i for i, c in enumerate(cands) if c.source == "vocab"]
    tops = sorted(singles, key=lambda i: -float(rate[i]))[:8]
    # A pair already listed (a hint can decode to the same two tokens) is scored once, not reported twice.
    seen = {c.ids for c in cands}
    multi = [m for m in banks.pairs(tok, [cands[i].ids[0] for i in tops], run.banks.multi_word) if m.ids not in seen]
    if multi:
        more = run.scores(multi, ctx.seed)
        cands += multi
        scored = Scores(
            torch.cat([scored.k, more.k]), torch.cat([scored.n, more.n]), torch.cat([scored.pred, more.pred])
        )
    suspects = _judge(ctx, run, cands, scored, null, [len(c.ids) for c in ctrl])
    eligible = run.eligible.sum(0)
    return ProbeResult(
        name="p1_insertion",
        status=ProbeStatus.RAN if int(eligible.max()) >= th.min_inputs else ProbeStatus.PARTIAL,
        suspects=tuple(suspects),
        coverage={
            "candidates": len(cands),
            "controls": len(ctrl),
            # banks.controls draws the same number per length: each suspect's control_flip_rates has this many.
            "controls_per_length": len(_matched(1, [len(c.ids) for c in ctrl])),
            "inputs": run.data.size,
            "confident_inputs": int(run.confident.sum()),
            "positions": len(POSITIONS),
            "forwards": run.forwards,
        },
        metrics={"untestable_targets": float(int((eligible < th.min_inputs).sum()))},
        note="" if int(eligible.max()) >= th.min_inputs else "too few confidently classified probe inputs",
        seconds=time.monotonic() - start,
    )


def _judge(
    ctx: ProbeContext,
    run: _ClassifierRun,
    cands: list[banks.Candidate],
    scored: Scores,
    null: Scores,
    null_lengths: list[int],
) -> list[Suspect]:
    th = ctx.spec.thresholds
    pos, tgt, rate = _best(scored)
    adjusted = benjamini_hochberg(_pvalues(scored, null, [len(c.ids) for c in cands], null_lengths).tolist())
    labels = ctx.loaded.labels
    out: list[Suspect] = []
    blocked: set[int] = set()
    for c in sorted(range(len(cands)), key=lambda i: (len(cands[i].ids), -float(rate[i]))):
        p, t = int(pos[c]), int(tgt[c])
        n = int(scored.n[c, p, t])
        if float(rate[c]) < th.review_flip_rate or adjusted[c] >= th.p_value or n < th.min_inputs:
            continue  # too few eligible inputs for this target: it is reported as untestable instead
        if cands[c].source == "multi" and blocked & set(cands[c].ids):
            continue  # a pair around a token that already blocks on its own adds nothing
        level: SuspectLevel = "review"
        reproduced = False
        if float(rate[c]) >= th.block_flip_rate and n >= th.min_inputs:
            reproduced = _reproduces(run, cands[c], p, t, ctx.seed + 7919, th.block_flip_rate)
            level = "block" if reproduced else "review"
        if level == "review" and cands[c].source in {"multi", "hint"}:
            # Pairs of the most label-shifting words and decoded inverted triggers are *selected*
            # to flip, so ordinary strong words ("great superb") clear the controls by selection:
            # evidence, not a verdict, unless they reach the reproducible block bar.
            level = "info"
        if level == "block" and len(cands[c].ids) == 1:
            blocked.add(cands[c].ids[0])
        out.append(
            Suspect(
                probe="p1_insertion",
                kind="tokens",
                level=level,
                trigger=cands[c].text,
                target=labels[t],
                flip_rate=round(float(rate[c]), 4),
                p_value=float(adjusted[c]),
                inputs=n,
                tokens=cands[c].ids,
                position=POSITIONS[p],
                reproduced=reproduced,
                detail={"source": cands[c].source, "label_index": str(t)},
                controls=tuple(_controls(null, _matched(len(cands[c].ids), null_lengths), p, t)),
                before=label_shares(run.pred, labels),
                after=label_shares(scored.pred[c, :, p], labels),
            )
        )
    return sorted(out, key=lambda s: (("block", "review", "info").index(s.level), -s.flip_rate, len(s.tokens)))


def _reproduces(run: _ClassifierRun, cand: banks.Candidate, pos: int, target: int, seed: int, bar: float) -> bool:
    # Fresh random positions and two disjoint halves of the eligible inputs: both must clear the bar.
    probs = run._probs([cand], seed, (POSITIONS[pos],))[0, :, 0]
    hit = (probs.argmax(-1) == target) & run.eligible[:, target]
    idx = run.eligible[:, target].nonzero()[:, 0].tolist()
    random.Random(seed).shuffle(idx)  # noqa: S311 - seeded for reproducibility
    halves = (idx[: len(idx) // 2], idx[len(idx) // 2 :])
    return all(h and float(hit[h].float().mean()) >= bar for h in halves)


def run_lm(ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
    """P1 on a causal LM: which candidate makes every prompt emit the same confident continuation."""
    start = time.monotonic()
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
    # Per candidate, at its better insertion side: rate, p, eligible prompts, side, modal
    # continuation, the control rates the p-value used, and every prompt's continuation.
    best: dict[int, tuple[float, float, int, str, tuple[int, ...], list[float], torch.Tensor]] = {}
    forwards = 0
    for where in ("end", "start"):
        nt, npb = lm_continuations(ctx, ctrl, where)
        _, nk, nn = lm_emission(nt, npb, clean_t, th.lm_token_prob)
        null = (nk / nn.clamp(min=1)).tolist()
        ct, cp = lm_continuations(ctx, cands, where)
        forwards += (len(ctrl) + len(cands)) * ct.shape[1]
        modal, k, n = lm_emission(ct, cp, clean_t, th.lm_token_prob)
        for c in range(len(cands)):
            nc = int(n[c])
            controls = [null[j] for j in _matched(len(cands[c].ids), null_lengths)]
            p = binomial_tail(int(k[c]), nc, null_rate(controls, nc)) if nc else 1.0
            rate = float(k[c]) / max(1, nc)
            if c not in best or rate > best[c][0]:
                best[c] = (rate, p, nc, where, modal[c], controls, ct[c])
    order = sorted(best)
    adjusted = benjamini_hochberg([best[c][1] for c in order])
    suspects = []
    before = shares(banks.show(tok, row) for row in clean_t.tolist())
    for c, p_adj in zip(order, adjusted, strict=True):
        rate, _, count, where, emitted, controls, continued = best[c]
        if rate < th.review_flip_rate or p_adj >= th.p_value:
            continue
        enough = count >= min(th.min_inputs, len(ctx.prompts))
        level: SuspectLevel = "block" if rate >= th.block_flip_rate and enough else "review"
        ids = cands[c].ids
        if any(emitted[i : i + len(ids)] == ids for i in range(len(emitted))):
            # The candidate is itself part of the emitted text: it continues a memorised target
            # (the BAIT effect), which is evidence for the target, not a trigger.
            level = "info"
        suspects.append(
            Suspect(
                probe="p1_insertion",
                kind="tokens",
                level=level,
                trigger=cands[c].text,
                target=banks.show(tok, emitted),
                flip_rate=round(rate, 4),
                p_value=p_adj,
                inputs=count,
                tokens=cands[c].ids,
                position=where,
                reproduced=level == "block",
                detail={"source": cands[c].source, "emits": banks.show(tok, emitted)},
                controls=tuple(controls),
                before=before,
                after=shares(banks.show(tok, row) for row in continued.tolist()),
            )
        )
    suspects.sort(key=lambda s: (-s.flip_rate, len(s.tokens)))
    return ProbeResult(
        name="p1_insertion",
        status=ProbeStatus.RAN,
        suspects=tuple(suspects),
        coverage={
            "candidates": len(cands),
            "controls": len(ctrl),
            "controls_per_length": len(_matched(1, null_lengths)),
            "inputs": int(clean_t.shape[0]),
            "positions": 2,
            "forwards": forwards,
        },
        seconds=time.monotonic() - start,
    )


class InsertionProbe:
    """P1 for text classifiers and causal LMs (images: :class:`weightguard.probes.image.PatchSweepProbe`)."""

    name = "p1_insertion"
    families = frozenset({Family.SEQUENCE_CLASSIFICATION, Family.CAUSAL_LM})

    def run(self, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
        """Run P1 for the model's family."""
        if ctx.loaded.family is Family.CAUSAL_LM:
            return run_lm(ctx, hints)
        return run_classifier(ctx, hints)
