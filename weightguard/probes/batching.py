"""Batched forward passes for many (trigger x input) pairs, on GPU or CPU.

Inputs are tokenised once; a triggered sequence is assembled by index
arithmetic on token ids (prefix specials, body up to the insertion point, the
trigger ids, the rest of the body, suffix specials), never by re-tokenising
strings. Items are bucketed by length, padded per micro-batch, and micro-batches
are sized in tokens: on CUDA from the free memory, halved on out-of-memory.
Encoder classifiers pool the first token, so they are padded on the right;
decoders are padded on the left with ``position_ids`` derived from the mask,
which keeps cached continuation correct. On CUDA every forward runs under
``inference_mode`` and bf16 autocast; on CPU in fp32. Not handled here: which
candidates to try or what the outputs mean (the probes do that).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from weightguard.errors import ProbeError


def select_device(requested: str) -> torch.device:
    """Return the device for ``auto``, ``cuda`` or ``cpu``; ``cuda`` without a GPU is an error."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise ProbeError("--device cuda was asked for but no CUDA device is available", hint="use --device auto")
    return torch.device("cpu")


@contextlib.contextmanager
def forward_mode(device: torch.device) -> Iterator[None]:
    """Forward-only context: ``inference_mode``, plus bf16 autocast on CUDA."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


@dataclass(frozen=True, slots=True)
class Tokenised:
    """A probe set tokenised once: bodies without specials, plus the specials around them."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    bodies: torch.Tensor  # (N, Lmax) long, right-padded with 0
    lengths: torch.Tensor  # (N,) long

    @property
    def size(self) -> int:
        """Number of inputs."""
        return int(self.bodies.shape[0])


def special_frame(tokenizer: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Find the special tokens the tokenizer puts before and after a text (``[CLS]`` / ``[SEP]``)."""
    enc = tokenizer("probe", add_special_tokens=True)["input_ids"]  # type: ignore[operator]
    bare = tokenizer("probe", add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    for at in range(len(enc) - len(bare) + 1):
        if enc[at : at + len(bare)] == bare:
            return tuple(enc[:at]), tuple(enc[at + len(bare) :])
    return (), ()


def tokenise(tokenizer: object, texts: Sequence[str], *, max_body: int, specials: bool = True) -> Tokenised:
    """Tokenise ``texts`` once (bodies truncated to ``max_body`` tokens)."""
    prefix, suffix = special_frame(tokenizer) if specials else ((), ())
    ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"])[:max_body] for t in texts]  # type: ignore[operator]
    ids = [x for x in ids if x]
    if not ids:
        raise ProbeError("no probe input produced any token with this tokenizer")
    return Tokenised(prefix, suffix, *pad_rows(ids, 0))


def pad_rows(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into a (N, Lmax) tensor and return it with the lengths."""
    width = max(1, max((len(r) for r in rows), default=1))
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
    return out, torch.tensor([len(r) for r in rows], dtype=torch.long)


@dataclass(frozen=True, slots=True)
class Items:
    """(candidate, input, insertion point) triples; ``cand`` indexes the trigger table."""

    cand: torch.Tensor
    inp: torch.Tensor
    at: torch.Tensor


def assemble(
    data: Tokenised, trig: torch.Tensor, trig_len: torch.Tensor, items: Items, *, pad: int, left: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build padded ids and attention mask for ``items`` by index arithmetic (no re-tokenising)."""
    p, s = len(data.prefix), len(data.suffix)
    b = data.lengths[items.inp]
    t = trig_len[items.cand]
    k = torch.minimum(items.at, b)
    total = p + b + t + s
    width = int(total.max())
    j = torch.arange(width)[None, :] - ((width - total)[:, None] if left else 0)
    pre = torch.tensor(data.prefix or (pad,), dtype=torch.long)
    suf = torch.tensor(data.suffix or (pad,), dtype=torch.long)
    kk, tt, bb = k[:, None], t[:, None], b[:, None]
    body_a = data.bodies[items.inp[:, None], (j - p).clamp(0, data.bodies.shape[1] - 1)]
    body_b = data.bodies[items.inp[:, None], (j - p - tt).clamp(0, data.bodies.shape[1] - 1)]
    trg = trig[items.cand[:, None], (j - p - kk).clamp(0, trig.shape[1] - 1)]
    ids = torch.where(j < p, pre[j.clamp(0, len(pre) - 1)], body_a)
    ids = torch.where((j >= p + kk) & (j < p + kk + tt), trg, ids)
    ids = torch.where((j >= p + kk + tt) & (j < p + bb + tt), body_b, ids)
    ids = torch.where(j >= p + bb + tt, suf[(j - p - bb - tt).clamp(0, len(suf) - 1)], ids)
    mask = (j >= 0) & (j < total[:, None])
    return ids.masked_fill(~mask, pad), mask.long()


class MicroBatcher:
    """Splits length-sorted items into micro-batches of at most ``tokens`` padded tokens.

    On CUDA the budget starts from the free memory and is halved whenever a batch
    runs out of memory; the learned size is kept for the rest of the run.
    """

    def __init__(self, device: torch.device, tokens: int, hidden: int) -> None:
        self.device = device
        self.tokens = tokens
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            # Rough activation footprint per token for a forward pass: ~32 bf16 values per hidden unit.
            self.tokens = max(tokens, int(free * 0.5 / max(1, hidden * 64)))

    def spans(self, lengths: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield index tensors of items, bucketed by length, each within the token budget."""
        order = torch.argsort(lengths, stable=True)
        start = 0
        n = len(order)
        while start < n:
            end = start + 1
            while end < n and int(lengths[order[end]]) * (end - start + 1) <= self.tokens:
                end += 1
            yield order[start:end]
            start = end

    def shrink(self) -> bool:
        """Halve the budget after an out-of-memory error; False when it cannot shrink further."""
        if self.tokens <= 64:
            return False
        self.tokens //= 2
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return True


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (left padding keeps absolute positions right)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def classify(
    model: torch.nn.Module,
    data: Tokenised,
    trig: torch.Tensor,
    trig_len: torch.Tensor,
    items: Items,
    batcher: MicroBatcher,
    *,
    pad: int,
) -> torch.Tensor:
    """Softmax probabilities (n_items, n_labels) for every triggered item, in item order."""
    lengths = data.lengths[items.inp] + trig_len[items.cand]
    out: torch.Tensor | None = None
    pending = list(batcher.spans(lengths))
    while pending:
        idx = pending.pop(0)
        sub = Items(items.cand[idx], items.inp[idx], items.at[idx])
        ids, mask = assemble(data, trig, trig_len, sub, pad=pad, left=False)
        try:
            with forward_mode(batcher.device):
                logits = model(input_ids=ids.to(batcher.device), attention_mask=mask.to(batcher.device)).logits
        except torch.cuda.OutOfMemoryError as exc:
            if not batcher.shrink() or len(idx) == 1:
                raise ProbeError("out of GPU memory even for a single probe sequence") from exc
            half = len(idx) // 2
            pending[:0] = [idx[:half], idx[half:]]
            continue
        probs = logits.float().softmax(-1).cpu()
        if out is None:
            out = torch.empty(len(items.cand), probs.shape[-1])
        out[idx] = probs
    if out is None:
        raise ProbeError("no probe items to classify")
    return out


def greedy(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    device: torch.device,
    cache: object | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy-continue left-padded ``ids`` for ``steps`` tokens; return (tokens, their probabilities).

    ``mask`` covers any cached prefix plus ``ids``; with ``cache`` only ``ids`` are fed.
    """
    ids, mask = ids.to(device), mask.to(device)
    pos = position_ids(mask)[:, -ids.shape[1] :]
    tokens, probs = [], []
    with forward_mode(device):
        for _ in range(steps):
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
            cache = out.cache
            p = out.logits[:, -1].float().softmax(-1)
            best, tok = p.max(-1)
            tokens.append(tok)
            probs.append(best)
            ids = tok[:, None]
            mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
            pos = pos[:, -1:] + 1
    return torch.stack(tokens, 1).cpu(), torch.stack(probs, 1).cpu()


def prefix_cache(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, device: torch.device) -> object:
    """Run the clean prompts once and return their KV cache (reused across every appended candidate)."""
    with forward_mode(device):
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids(mask).to(device),
            use_cache=True,
        )
    return out.cache


def expand_cache(cache: object, repeats: int) -> object:
    """A copy of ``cache`` with every row repeated ``repeats`` times (row-major: prompt, then candidate)."""
    grown = copy.deepcopy(cache)
    grown.batch_repeat_interleave(repeats)  # type: ignore[attr-defined]
    return grown
