"""P3: BAIT-style target-output inversion for causal LMs (forward passes only).

For each first token ``t`` of the bank, ``t`` is appended to every clean prompt
(the prompts' KV cache is reused, so each token costs one step per prompt) and
the continuation is extended greedily. A backdoor's target is a chain of tokens
the model emits with near certainty whatever the prompt; a clean model's
continuations diverge or stay uncertain. Each first token gets a *consistency*
(share of prompts agreeing on the modal continuation) and the mean probability
of that continuation; candidates over both bars are reported as target texts,
each with the text that follows the prompts without and with its first token
(no random controls: the target's bars are absolute). Not handled here:
finding the trigger that produces a target (P1's LM path does, and the suite
links the two), or the verdict.
"""

from __future__ import annotations

import time
from collections import Counter

from weightguard.probes import banks
from weightguard.probes._lm import clean_continuations, lm_continuations
from weightguard.probes.evidence import shares
from weightguard.probes.interface import Family, ProbeContext, ProbeResult, ProbeStatus, Suspect


class TargetInversionProbe:
    """P3 for causal LMs."""

    name = "p3_lm_target"
    families = frozenset({Family.CAUSAL_LM})

    def run(self, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
        """Sweep first tokens and report continuations emitted consistently and confidently."""
        start = time.monotonic()
        tok = ctx.loaded.tokenizer
        th = ctx.spec.thresholds
        banks_ = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
        ranked = [t for h in hints if h.probe == "p4_weights" for t in h.tokens]
        firsts = banks.single_tokens(tok, banks.token_pool(tok), banks_.lm_first_tokens, ctx.seed, ranked)
        # Full-length prompts: a first token appended after a finished sentence starts the target.
        clean, _ = clean_continuations(ctx, short=False)
        toks, probs = lm_continuations(ctx, firsts, "end", short=False)
        before = shares(banks.show(tok, row) for row in clean.tolist())
        found = []
        for c, cand in enumerate(firsts):
            seqs = [tuple(r) for r in toks[c].tolist()]
            modal, count = Counter(seqs).most_common(1)[0]
            agree = [i for i, s in enumerate(seqs) if s == modal]
            consistency = count / len(seqs)
            mean_prob = float(probs[c, agree].mean())
            # A continuation the clean prompts already produce is ordinary text, not a hidden target.
            natural = sum(tuple(r) == modal for r in clean.tolist()) / max(1, len(seqs))
            if consistency >= th.lm_consistency and mean_prob >= th.lm_token_prob and natural < 0.5:
                text = banks.show(tok, (*cand.ids, *modal))
                found.append(
                    Suspect(
                        probe=self.name,
                        kind="target-text",
                        # Evidence for P1 and the calibrator, not a verdict alone: appended after a
                        # sentence, an ordinary word is completed the same way across prompts (issue 19).
                        level="info",
                        trigger="",
                        target=text,
                        flip_rate=round(consistency, 4),
                        p_value=1.0,
                        inputs=len(seqs),
                        tokens=cand.ids,
                        detail={"first_token": cand.text, "mean_token_prob": f"{mean_prob:.3f}"},
                        # What follows the prompt: its clean continuation, or the first token and its continuation.
                        before=before,
                        after=shares(banks.show(tok, (*cand.ids, *s)) for s in seqs),
                    )
                )
        found.sort(key=lambda s: -s.flip_rate)
        return ProbeResult(
            name=self.name,
            status=ProbeStatus.RAN,
            suspects=tuple(found),
            coverage={"first_tokens": len(firsts), "prompts": int(clean.shape[0])},
            seconds=time.monotonic() - start,
        )
