"""Candidate trigger banks and random controls, built from the model's own tokenizer.

A bank is a list of candidates, each a display string and its token ids:
single vocabulary tokens (every one when the vocabulary is small, otherwise the
P4 embedding-norm outliers first, then a seeded sample), published and natural
trigger phrases (``data/phrases.txt`` plus the policy's ``extra_triggers``),
and random-token control sequences drawn from the same pool with matching
lengths. The shipped generic probe inputs are read here too. Not handled here:
running anything, or deciding what a candidate's effect means.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import torch

from weightguard.errors import ProbeError


@dataclass(frozen=True, slots=True)
class Candidate:
    """One trigger candidate: what to show and the ids to insert."""

    text: str
    ids: tuple[int, ...]
    source: str  # "vocab", "phrase", "hint", "multi", "control"


def builtin_lines(name: str) -> tuple[str, ...]:
    """Return the non-empty lines of a shipped data file (``texts``, ``prompts``, ``phrases``)."""
    text = resources.files("weightguard.probes").joinpath("data", f"{name}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def token_pool(tokenizer: object) -> list[int]:
    """Ids of every ordinary vocabulary token (no specials, no empty or whitespace-only tokens)."""
    vocab: dict[str, int] = tokenizer.get_vocab()  # type: ignore[attr-defined]
    specials = set(tokenizer.all_special_ids)  # type: ignore[attr-defined]
    pool = []
    for token, idx in sorted(vocab.items(), key=lambda kv: kv[1]):
        if idx in specials or not token.strip() or token.startswith("<") and token.endswith(">"):
            continue
        pool.append(idx)
    if not pool:
        raise ProbeError("the tokenizer has no ordinary tokens to build a trigger bank from")
    return pool


def show(tokenizer: object, ids: Sequence[int]) -> str:
    """Human-readable form of a token sequence."""
    text: str = tokenizer.decode(list(ids), skip_special_tokens=False)  # type: ignore[attr-defined]
    return text.strip() or " ".join(tokenizer.convert_ids_to_tokens(list(ids)))  # type: ignore[attr-defined]


def single_tokens(
    tokenizer: object, pool: Sequence[int], limit: int, seed: int, ranked: Sequence[int] = ()
) -> list[Candidate]:
    """Single-token candidates: all of ``pool`` if it fits, else ``ranked`` first then a seeded sample."""
    if len(pool) <= limit:
        chosen = list(pool)
    else:
        head = list(dict.fromkeys(i for i in ranked if i in set(pool)))[: limit // 2]
        rest = [i for i in pool if i not in set(head)]
        chosen = head + random.Random(seed).sample(rest, limit - len(head))  # noqa: S311 - seeded for reproducibility, not security
    return [Candidate(show(tokenizer, (i,)), (i,), "vocab") for i in chosen]


def phrases(tokenizer: object, extra: Sequence[str]) -> list[Candidate]:
    """Published and natural trigger phrases that the tokenizer can spell without unknown tokens."""
    unk = getattr(tokenizer, "unk_token_id", None)
    out: list[Candidate] = []
    seen: set[tuple[int, ...]] = set()
    for text in (*builtin_lines("phrases"), *extra):
        for variant in dict.fromkeys((text, text.lower())):
            ids = tuple(tokenizer(variant, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
            if ids and unk not in ids and ids not in seen and len(ids) <= 16:
                seen.add(ids)
                out.append(Candidate(variant, ids, "phrase" if text not in extra else "policy"))
    return out


def pairs(tokenizer: object, tops: Sequence[int], limit: int) -> list[Candidate]:
    """Ordered pairs of the strongest single tokens, for triggers whose words only work together."""
    out = [Candidate(show(tokenizer, (a, b)), (a, b), "multi") for a in tops for b in tops if a != b]
    return out[:limit]


def controls(pool: Sequence[int], lengths: Sequence[int], count: int, seed: int) -> list[Candidate]:
    """Random-token control sequences, ``count`` split evenly over the candidates' ``lengths`` (at least 20 each)."""
    rng = random.Random(seed ^ 0x5EED)  # noqa: S311 - seeded for reproducibility, not security
    sizes = sorted(set(lengths)) or [1]
    per = max(20, count // len(sizes))
    return [
        Candidate("<control>", tuple(rng.choice(pool) for _ in range(size)), "control")
        for size in sizes
        for _ in range(per)
    ]


def table(cands: Sequence[Candidate], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack candidate ids into a (C, Tmax) tensor plus lengths, for index arithmetic in batching."""
    width = max(1, max((len(c.ids) for c in cands), default=1))
    ids = torch.full((len(cands), width), pad, dtype=torch.long)
    for i, c in enumerate(cands):
        ids[i, : len(c.ids)] = torch.tensor(c.ids, dtype=torch.long)
    return ids, torch.tensor([len(c.ids) for c in cands], dtype=torch.long)
