"""Shared causal-LM helpers for P1 and P3: prompts, batched greedy continuations, emission counts.

Prompts are tokenised once and left-padded after a BOS token. Candidates
appended at the end reuse the prompts' KV cache (computed once, expanded per
chunk of same-length candidates), so each candidate costs only its own tokens
plus the generated ones; candidates inserted at the start or in the middle
need a full forward. The middle position is drawn once per prompt from the
probe's seed, so every candidate and control sits at the same place and their
rates compare. Not handled here: which candidates to try, or statistics.
"""

from __future__ import annotations

from collections import Counter

import torch

from weightguard.probes import banks
from weightguard.probes.batching import expand_cache, forward_mode, greedy, pad_rows, prefix_cache
from weightguard.probes.interface import ProbeContext, check_budget

LM_STEPS = 6
SAMPLED_PROMPTS = 32
SAMPLED_LENGTH = 8
SHORT_LENGTHS = (2, 6)  # P1's prompts: the samples cut to 2..6 tokens, cycling


def sampled_prompts(ctx: ProbeContext, count: int = SAMPLED_PROMPTS, short: bool = True) -> list[list[int]]:
    """``count`` prompts the model writes itself from BOS (seeded sampling at temperature 1).

    They are the model's own natural text, whatever its vocabulary or domain, so a
    target that appears on them is not an artefact of out-of-domain prompts; a
    backdoor's trigger is rare in them, as it was in the clean part of training.
    With ``short`` (P1) their lengths cycle through :data:`SHORT_LENGTHS`: a
    backdoor often fires where the sentence holding its trigger ends, and
    prompts all longer than one sentence would have passed that point before the
    continuation starts (issue 19: mid-prompt triggers were missed). P3 keeps
    the full :data:`SAMPLED_LENGTH`: a target's first token appended after a
    finished sentence is continued into the target, not into the sentence.
    """
    tok = ctx.loaded.tokenizer
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id  # type: ignore[union-attr]
    g = torch.Generator().manual_seed(ctx.seed ^ 0x5A3)
    ids = torch.full((count, 1), int(bos), dtype=torch.long)
    specials = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)  # type: ignore[union-attr]
    with forward_mode(ctx.device):
        for _ in range(SAMPLED_LENGTH):
            logits = ctx.loaded.model(input_ids=ids.to(ctx.device)).logits[:, -1].float().cpu()
            logits[:, specials] = -torch.inf  # a prompt is text: no EOS/PAD in the middle of it
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)
            ids = torch.cat([ids, nxt], 1)
    low, high = SHORT_LENGTHS
    return [
        row[1 : 1 + (low + i % (high - low + 1) if short else SAMPLED_LENGTH)] for i, row in enumerate(ids.tolist())
    ]


def middles(ctx: ProbeContext, lengths: list[int]) -> list[int]:
    """Per prompt body of ``lengths[r]`` tokens: where a ``middle`` candidate goes (1 .. length-1), seeded."""
    g = torch.Generator().manual_seed(ctx.seed ^ 0x3D1)
    return [1 + int(torch.randint(0, max(1, n - 1), (1,), generator=g)) if n > 1 else n for n in lengths]


def _lm_prompts(ctx: ProbeContext, short: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    tok = ctx.loaded.tokenizer
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id  # type: ignore[union-attr]
    banks_ = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
    unk = getattr(tok, "unk_token_id", None)
    bodies = [list(tok(p, add_special_tokens=False)["input_ids"])[:96] for p in ctx.prompts[: banks_.inputs]]  # type: ignore[misc]
    # A prompt the vocabulary cannot spell (mostly unknown tokens) says nothing about this model.
    bodies = [b for b in bodies if b and sum(t == unk for t in b) <= 0.3 * len(b)]
    bodies += sampled_prompts(ctx, short=short)
    rows = [[bos, *b] for b in bodies]
    pad = int(tok.pad_token_id)  # type: ignore[union-attr]
    ids, lengths = pad_rows(rows, pad)
    width = ids.shape[1]
    # Left-pad: decoders continue from the last column.
    left = torch.full_like(ids, pad)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths.tolist()):
        left[i, width - n :] = ids[i, :n]
        mask[i, width - n :] = 1
    return left, mask, pad


def lm_continuations(
    ctx: ProbeContext, cands: list[banks.Candidate], where: str, steps: int = LM_STEPS, short: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy continuations (C, N, steps) and their probabilities with each candidate inserted.

    ``where`` is ``end`` (the prompts' KV cache is computed once and expanded per
    candidate chunk, so a candidate costs only its own tokens), ``start`` (right
    after BOS) or ``middle`` (inside the prompt, at :func:`middles`); ``short``
    as in :func:`sampled_prompts`.
    """
    ids, mask, pad = _lm_prompts(ctx, short)
    n = ids.shape[0]
    reals = [ids[r][mask[r].bool()].tolist() for r in range(n)]
    at = middles(ctx, [len(r) - 1 for r in reals]) if where == "middle" else [0] * n
    model, device = ctx.loaded.model, ctx.device
    toks = torch.empty(len(cands), n, steps, dtype=torch.long)
    probs = torch.empty(len(cands), n, steps)
    cache = prefix_cache(model, ids, mask, device) if where == "end" else None
    chunk = max(1, ctx.spec.micro_batch_tokens // max(1, n * (ids.shape[1] + steps + 4)))
    by_len: dict[int, list[int]] = {}
    for i, c in enumerate(cands):
        by_len.setdefault(len(c.ids), []).append(i)
    for _, members in sorted(by_len.items()):
        for s in range(0, len(members), chunk):
            check_budget(ctx, "P1 insertion (LM)")
            part = members[s : s + chunk]
            trig = torch.tensor([list(cands[i].ids) for i in part], dtype=torch.long)
            if cache is not None:
                step_ids = trig.repeat(n, 1)
                step_mask = torch.cat([mask.repeat_interleave(len(part), 0), torch.ones_like(step_ids)], 1)
                t, p = greedy(model, step_ids, step_mask, steps, device, expand_cache(cache, len(part)))
            else:
                # Insert: [pad..., bos, prompt[:at], trigger, prompt[at:]]; rebuild the left padding.
                rows = []
                for j in range(len(part)):
                    for r, real in enumerate(reals):
                        cut = 1 + at[r]
                        rows.append([*real[:cut], *trig[j].tolist(), *real[cut:]])
                width = max(map(len, rows))
                step_ids = torch.tensor([[pad] * (width - len(x)) + x for x in rows])
                masks = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in rows])
                t, p = greedy(model, step_ids, masks, steps, device)
            if cache is not None:  # rows are prompt-major after expand_cache
                t, p = (
                    t.reshape(n, len(part), steps).transpose(0, 1),
                    p.reshape(n, len(part), steps).transpose(0, 1),
                )
            toks[part] = t.reshape(len(part), n, steps)
            probs[part] = p.reshape(len(part), n, steps)
    return toks, probs


def clean_continuations(
    ctx: ProbeContext, steps: int = LM_STEPS, short: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy continuations of the clean prompts (no candidate)."""
    ids, mask, _ = _lm_prompts(ctx, short)
    return greedy(ctx.loaded.model, ids, mask, steps, ctx.device)


def contains(row: list[int], gram: tuple[int, ...]) -> bool:
    """Whether ``gram`` occurs in ``row`` as a contiguous run."""
    k = len(gram)
    return k > 0 and any(tuple(row[i : i + k]) == gram for i in range(len(row) - k + 1))


def lm_grams(
    toks: torch.Tensor, probs: torch.Tensor, clean: torch.Tensor, min_prob: float, specials: set[int], n: int = 3
) -> tuple[list[tuple[int, ...]], torch.Tensor, torch.Tensor]:
    """Per candidate: the n-gram most prompts emit confidently that their clean continuation lacks.

    ``toks``/``probs`` are (C, N, steps) continuations with the candidate inserted,
    ``clean`` the (N, steps) clean ones. Searching the whole continuation, not its
    first tokens, finds a target the model emits after finishing the prompt's own
    sentence. Grams made only of special tokens (end of text) never count.
    Returns the grams, hits (k) and prompts whose clean continuation lacks the gram (n).
    """
    clean_rows = [tuple(r) for r in clean.tolist()]
    grams_out: list[tuple[int, ...]] = []
    ks: list[int] = []
    ns: list[int] = []
    for c in range(toks.shape[0]):
        counts: Counter[tuple[int, ...]] = Counter()
        starts: Counter[tuple[int, ...]] = Counter()  # summed first positions: ties go to the target's head
        rows = toks[c].tolist()
        sure = (probs[c] >= min_prob).tolist()
        for r, row in enumerate(rows):
            seen: dict[tuple[int, ...], int] = {}
            for i in range(len(row) - n + 1):
                g = tuple(row[i : i + n])
                if g not in seen and all(sure[r][i : i + n]) and not set(g) & specials:
                    seen[g] = i
            fresh = {g: i for g, i in seen.items() if not contains(list(clean_rows[r]), g)}
            counts.update(fresh.keys())
            starts.update(fresh)
        if not counts:
            grams_out.append(())
            ks.append(0)
            ns.append(len(rows))
            continue
        gram, k = max(counts.items(), key=lambda kv: (kv[1], -starts[kv[0]], kv[0]))
        grams_out.append(gram)
        ks.append(k)
        ns.append(sum(not contains(list(r), gram) for r in clean_rows))
    return grams_out, torch.tensor(ks, dtype=torch.float), torch.tensor(ns, dtype=torch.float)


def gram_rate(toks: torch.Tensor, clean: torch.Tensor, gram: tuple[int, ...]) -> float:
    """Share of prompts whose clean continuation lacks ``gram`` and whose ``toks`` (N, steps) row has it."""
    free = [i for i, row in enumerate(clean.tolist()) if not contains(row, gram)]
    if not gram or not free:
        return 0.0
    return sum(contains(toks[i].tolist(), gram) for i in free) / len(free)
