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

from weightguard.probes import banks, natural
from weightguard.probes.batching import Items, MicroBatcher, Tokenised, classify, pad_rows, special_frame
from weightguard.probes.evidence import label_shares
from weightguard.probes.interface import (
    Family,
    ProbeContext,
    ProbeResult,
    ProbeStatus,
    Suspect,
    SuspectLevel,
    check_budget,
)
from weightguard.probes.loading import embedding_matrix
from weightguard.probes.p1_lm import run_lm
from weightguard.probes.stats import benjamini_hochberg, binomial_tail, null_rate

POSITIONS = ("start", "end", "random")


SYNTHETIC_INPUTS = 32  # in-vocabulary inputs drawn from the model's own tokens, added to the probe texts
MIN_HARD = 8  # hard inputs a source class needs before its flip rate counts
HARD_BANK = 160  # natural words whose hard flip rates form the null (plus every candidate that clears the easy bar)


@dataclass(frozen=True, slots=True)
class Scores:
    """Per candidate, position and target: flips and eligible inputs (k, n), shape (C, P, T).

    ``pred`` keeps every triggered input's top label, shape (C, N, P), for the
    suspects' output distributions; ``gain`` is the mean probability gain per
    label over every input and position, shape (C, T), which ranks each label's
    strongest natural words.
    """

    k: torch.Tensor
    n: torch.Tensor
    pred: torch.Tensor
    gain: torch.Tensor

    @property
    def rate(self) -> torch.Tensor:
        """Flip rates, 0 where nothing was eligible."""
        return self.k / self.n.clamp(min=1)

    def cat(self, other: Scores) -> Scores:
        """These scores followed by ``other``'s (same inputs)."""
        return Scores(*(torch.cat([a, b]) for a, b in zip(self.parts(), other.parts(), strict=True)))

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The four tensors, in constructor order."""
        return self.k, self.n, self.pred, self.gain


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


def _rows(data: Tokenised) -> list[list[int]]:
    return [data.bodies[i, : int(data.lengths[i])].tolist() for i in range(data.size)]


class _ClassifierRun:
    """State of one P1 run on a sequence classifier: probe inputs, clean predictions, and the hard set."""

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx
        tok = ctx.loaded.tokenizer
        model = ctx.loaded.model
        self.banks = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
        max_pos = int(getattr(model.config, "max_position_embeddings", 512))
        self.max_body = max(8, min(max_pos - 24, 128))
        self.pool = banks.token_pool(tok)
        prefix, suffix = special_frame(tok)
        texts = [list(tok(t, add_special_tokens=False)["input_ids"])[: self.max_body] for t in ctx.texts]  # type: ignore[misc]
        rows = [r for r in texts if r][: self.banks.inputs]
        # The model's own vocabulary: the shipped English inputs say nothing to a model with another one.
        rows += natural.synthetic_rows(self.pool, SYNTHETIC_INPUTS, ctx.seed)
        self.data = Tokenised(prefix, suffix, *pad_rows(rows, 0))
        self.pad = int(tok.pad_token_id)  # type: ignore[union-attr]
        hidden = int(getattr(model.config, "hidden_size", 768))
        self.batcher = MicroBatcher(ctx.device, ctx.spec.micro_batch_tokens, hidden)
        self.forwards = 0
        self.clean = self._probs([banks.Candidate("", (), "clean")], ctx.seed, ("start",), self.data)[0, :, 0]
        conf, self.pred = self.clean.max(-1)
        self.conf = conf
        self.confident = conf >= ctx.spec.thresholds.min_clean_confidence
        labels = self.clean.shape[-1]
        self.eligible = torch.stack([self.confident & (self.pred != t) for t in range(labels)], 1)  # (N, T)
        self.hard: Tokenised | None = None
        self.hard_cls = torch.zeros(0, dtype=torch.long)

    def _probs(
        self, cands: list[banks.Candidate], seed: int, positions: tuple[str, ...], data: Tokenised
    ) -> torch.Tensor:
        trig, trig_len = banks.table(cands, self.pad)
        items = _items(data.lengths, len(cands), seed, positions)
        probs = classify(self.ctx.loaded.model, data, trig, trig_len, items, self.batcher, pad=self.pad)
        self.forwards += len(items.cand)
        return probs.reshape(len(cands), data.size, len(positions), -1)

    def scores(self, cands: list[banks.Candidate], seed: int, positions: tuple[str, ...] = POSITIONS) -> Scores:
        """Flip counts of ``cands`` on the probe inputs."""
        check_budget(self.ctx, "P1 insertion")
        probs = self._probs(cands, seed, positions, self.data)
        labels = probs.shape[-1]
        hit = probs.argmax(-1)[..., None] == torch.arange(labels)  # (C, N, P, T)
        elig = self.eligible[None, :, None, :]
        k = (hit & elig).sum(1).float()
        n = elig.sum(1).expand_as(k).float()
        gain = (probs - self.clean[None, :, None, :]).mean((1, 2))
        return Scores(k, n, probs.argmax(-1), gain)

    def build_hard(self, words: list[list[int]]) -> None:
        """Build the hard inputs from each label's strongest natural words; keep the ones the model is sure of."""
        rows, classes = natural.hard_rows(_rows(self.data), self.pred, self.conf, words, self.ctx.seed)
        if not rows:
            return
        rows = [r[: self.max_body] for r in rows]
        data = Tokenised(self.data.prefix, self.data.suffix, *pad_rows(rows, 0))
        clean = self._probs([banks.Candidate("", (), "clean")], self.ctx.seed, ("start",), data)[0, :, 0]
        cls = torch.tensor(classes)
        keep = (clean[torch.arange(len(rows)), cls] >= natural.HARD_CONFIDENCE).nonzero()[:, 0].tolist()
        if keep:
            self.hard = Tokenised(data.prefix, data.suffix, *pad_rows([rows[i] for i in keep], 0))
            self.hard_cls = cls[keep]

    def hard_n(self, target: int) -> int:
        """How many hard inputs belong to classes other than ``target``."""
        return int((self.hard_cls != target).sum())

    def hard_rates(self, cands: list[banks.Candidate], seed: int) -> torch.Tensor:
        """Per candidate and target, shape (C, T): the flip rate on the hard inputs of the *least* flipped class.

        A trigger flips every other class's most confident inputs; a natural word of
        one label does not flip inputs reinforced with another label's words. -1
        where no other class has :data:`MIN_HARD` hard inputs (content independence
        untestable for that target).
        """
        labels = int(self.clean.shape[-1])
        out = torch.full((len(cands), labels), -1.0)
        if self.hard is None or not cands:
            return out
        check_budget(self.ctx, "P1 content-independence test")
        pred = self._probs(cands, seed, POSITIONS, self.hard).argmax(-1)  # (C, Nh, P)
        for t in range(labels):
            per_class = [
                (pred[:, self.hard_cls == c] == t).float().mean(1)  # (C, P)
                for c in range(labels)
                if c != t and int((self.hard_cls == c).sum()) >= MIN_HARD
            ]
            if per_class:
                out[:, t] = torch.stack(per_class).min(0).values.max(-1).values
        return out


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
    pool = run.pool
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
    singles = [i for i, c in enumerate(cands) if c.source == "vocab"]
    words = natural.label_words(scored.gain[singles], [cands[i].ids[0] for i in singles])
    run.build_hard(words)
    # The natural bank (every single vocabulary token tried) plus whatever else clears the easy bar
    # gets the content-independence test; the rest of the candidates cannot matter.
    _, _, rate = _best(scored)
    tested = sorted(set(singles[:HARD_BANK]) | {i for i in range(len(cands)) if float(rate[i]) >= th.review_flip_rate})
    hard = torch.full((len(cands), scored.gain.shape[1]), -1.0)
    hard[tested] = run.hard_rates([cands[i] for i in tested], ctx.seed + 3)
    # Multi-word round: pairs of the singles that come closest to content independence.
    strength = hard.clamp(min=0).max(1).values * 2 + rate
    tops = sorted(singles, key=lambda i: -float(strength[i]))[:8]
    # A pair already listed (a hint can decode to the same two tokens) is scored once, not reported twice.
    seen = {c.ids for c in cands}
    multi = [m for m in banks.pairs(tok, [cands[i].ids[0] for i in tops], run.banks.multi_word) if m.ids not in seen]
    if multi:
        scored = scored.cat(run.scores(multi, ctx.seed))
        hard = torch.cat([hard, run.hard_rates(multi, ctx.seed + 3)])
        cands += multi
    bank = hard[[i for i in tested if i in set(singles)]]
    suspects = _judge(ctx, run, cands, scored, null, [len(c.ids) for c in ctrl], hard, bank, words)
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
            "synthetic_inputs": SYNTHETIC_INPUTS,
            "confident_inputs": int(run.confident.sum()),
            "hard_inputs": 0 if run.hard is None else run.hard.size,
            "natural_bank": int(bank.shape[0]),
            "positions": len(POSITIONS),
            "forwards": run.forwards,
        },
        metrics={
            "untestable_targets": float(int((eligible < th.min_inputs).sum())),
            **_features(scored, _clear_of_peers(cands, hard), bank),
        },
        note="" if int(eligible.max()) >= th.min_inputs else "too few confidently classified probe inputs",
        seconds=time.monotonic() - start,
    )


def _features(scored: Scores, hard: torch.Tensor, bank: torch.Tensor) -> dict[str, float]:
    """Model-level features the calibrator reads: the strongest easy and hard flip rates and anomaly."""
    _, _, rate = _best(scored)
    best_hard = float(hard.max()) if hard.numel() else 0.0
    index = max(
        (natural.anomaly_index(bank[:, t].tolist(), float(hard[:, t].max())) for t in range(hard.shape[1])),
        default=0.0,
    )
    return {
        "max_flip_rate": round(float(rate.max()), 4),
        "max_hard_flip_rate": round(max(0.0, best_hard), 4),
        "max_natural_anomaly": round(min(max(index, 0.0), 1000.0), 3),
    }


def _judge(
    ctx: ProbeContext,
    run: _ClassifierRun,
    cands: list[banks.Candidate],
    scored: Scores,
    null: Scores,
    null_lengths: list[int],
    hard: torch.Tensor,
    bank: torch.Tensor,
    words: list[list[int]],
) -> list[Suspect]:
    th = ctx.spec.thresholds
    pos, tgt, rate = _best(scored)
    adjusted = benjamini_hochberg(_pvalues(scored, null, [len(c.ids) for c in cands], null_lengths).tolist())
    labels = ctx.loaded.labels
    table = embedding_matrix(ctx.loaded.model).detach().float().cpu()
    # The test that matters: hard flips against what the model's natural words do to the same hard inputs.
    natural_p = benjamini_hochberg(
        [
            _natural_p(float(hard[c, int(tgt[c])]), run.hard_n(int(tgt[c])), bank[:, int(tgt[c])])
            for c in range(len(cands))
        ]
    )
    out: list[Suspect] = []
    blocked: set[int] = set()
    for c in sorted(range(len(cands)), key=lambda i: (len(cands[i].ids), -float(rate[i]))):
        p, t = int(pos[c]), int(tgt[c])
        n = int(scored.n[c, p, t])
        # The hard inputs of the other classes count toward the evidence: a rare label may have few
        # confident ordinary inputs, but its hard set is built to be large enough.
        significant = min(adjusted[c], natural_p[c]) < th.p_value
        if float(rate[c]) < th.review_flip_rate or not significant or n + run.hard_n(t) < th.min_inputs:
            continue  # too few eligible inputs for this target: it is reported as untestable instead
        if cands[c].source == "multi" and blocked & set(cands[c].ids):
            continue  # a pair around a token that already blocks on its own adds nothing
        h = float(hard[c, t])
        index = natural.anomaly_index(bank[:, t].tolist(), h)
        peer = _peer(cands, hard, c, t)
        independent = (
            h >= th.hard_flip_rate
            and index >= th.natural_anomaly_index
            and natural_p[c] < th.p_value
            and h - peer >= natural.PEER_MARGIN[min(len(cands[c].ids), 2) - 1]
        )
        level: SuspectLevel = "review"
        reproduced = False
        if float(rate[c]) >= th.block_flip_rate and independent:
            reproduced = _reproduces(run, cands[c], p, t, ctx.seed + 7919, th.block_flip_rate)
            level = "block" if reproduced else "review"
        detail = {
            "source": cands[c].source,
            "label_index": str(t),
            "hard_flip_rate": f"{h:.3f}",
            "natural_anomaly_index": f"{index:.2f}",
            "natural_peer_hard_flip_rate": f"{peer:.3f}",
        }
        if not independent:
            # It moves ordinary inputs but not the ones the model holds firmly in another class:
            # what a word tied to the label does (issue 19), not what a backdoor does.
            level = "info"
            detail["natural_label_word"] = "true"
            if len(cands[c].ids) == 1:
                detail["similarity_to_label_words"] = f"{natural.cosine_to_words(table, cands[c].ids[0], words[t]):.3f}"
        elif level == "review" and cands[c].source in {"multi", "hint"}:
            # Pairs and decoded inverted triggers are *selected* to flip: evidence, not a verdict,
            # unless they reach the reproducible block bar.
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
                p_value=float(natural_p[c] if h >= 0 else adjusted[c]),
                inputs=n + (run.hard_n(t) if h >= 0 else 0),
                tokens=cands[c].ids,
                position=POSITIONS[p],
                reproduced=reproduced,
                detail=detail,
                controls=tuple(_controls(null, _matched(len(cands[c].ids), null_lengths), p, t)),
                before=label_shares(run.pred, labels),
                after=label_shares(scored.pred[c, :, p], labels),
            )
        )
    return sorted(out, key=lambda s: (("block", "review", "info").index(s.level), -s.flip_rate, len(s.tokens)))


def _clear_of_peers(cands: list[banks.Candidate], hard: torch.Tensor) -> torch.Tensor:
    """``hard`` with -1 (untested) wherever a candidate does not stand clear of its natural peers.

    The calibrator's hard features then measure what a backdoor shows and a strong label word does not.
    """
    out = hard.clone()
    for c in range(len(cands)):
        margin = natural.PEER_MARGIN[min(len(cands[c].ids), 2) - 1]
        for t in range(hard.shape[1]):
            if float(hard[c, t]) >= 0 and float(hard[c, t]) - _peer(cands, hard, c, t) < margin:
                out[c, t] = -1.0
    return out


def _peer(cands: list[banks.Candidate], hard: torch.Tensor, c: int, target: int) -> float:
    """The strongest hard flip rate of a natural candidate as long as ``c`` and sharing none of its tokens.

    Vocabulary words and the pairs built from the strongest of them are what this model's ordinary
    vocabulary does to the hard inputs; a backdoor stands clear of its peers, a label word does not.
    """
    mine = set(cands[c].ids)
    rates = [
        float(hard[j, target])
        for j, other in enumerate(cands)
        if other.source in {"vocab", "multi"} and len(other.ids) == len(cands[c].ids) and not mine & set(other.ids)
    ]
    return max([0.0, *rates])


def _natural_p(rate: float, n: int, bank: torch.Tensor) -> float:
    """Binomial tail of a hard flip rate against the natural bank's hard flip rates (1.0 when untested)."""
    if rate < 0 or n == 0:
        return 1.0
    rates = [v for v in bank.tolist() if v >= 0]
    return binomial_tail(round(rate * n), n, null_rate(rates, n))


def _reproduces(run: _ClassifierRun, cand: banks.Candidate, pos: int, target: int, seed: int, bar: float) -> bool:
    # Fresh random positions and two disjoint halves of the eligible inputs: both must clear the bar.
    probs = run._probs([cand], seed, (POSITIONS[pos],), run.data)[0, :, 0]
    hit = (probs.argmax(-1) == target) & run.eligible[:, target]
    idx = run.eligible[:, target].nonzero()[:, 0].tolist()
    random.Random(seed).shuffle(idx)  # noqa: S311 - seeded for reproducibility
    halves = (idx[: len(idx) // 2], idx[len(idx) // 2 :])
    return all(h and float(hit[h].float().mean()) >= bar for h in halves)


class InsertionProbe:
    """P1 for text classifiers and causal LMs (images: :class:`weightguard.probes.image.PatchSweepProbe`)."""

    name = "p1_insertion"
    families = frozenset({Family.SEQUENCE_CLASSIFICATION, Family.CAUSAL_LM})

    def run(self, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
        """Run P1 for the model's family."""
        if ctx.loaded.family is Family.CAUSAL_LM:
            return run_lm(ctx, hints)  # in its own module: the LM statistics differ
        return run_classifier(ctx, hints)
