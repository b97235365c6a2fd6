"""Probe speed: batched P1 insertion against a naive per-(trigger, input) loop, in the same run.

Builds a BERT sequence classifier from a config with random weights (no
download) and a WordPiece tokenizer built in code, then measures on the same
model, candidates and inputs:

* **naive**: for every (candidate, input) pair, build the string, tokenise it
  and run one forward of batch size 1 (what a straightforward script does);
* **batched**: weightguard's P1 path: tokenise once, assemble every triggered
  sequence by index arithmetic, bucket by length, micro-batch by tokens, and run
  under ``inference_mode`` (plus bf16 autocast on CUDA).

Both count sequences per second; the naive loop runs on a subset of pairs (it is
slow) and the ratio is reported. ``--model base`` gives a ~110M-parameter
encoder (BERT-base shape) at ``--seq-len`` tokens (default 128, the GPU target
row of PROBES.md 2.4); ``--model tiny`` a 2-layer toy for CPU smoke runs.

    .venv/bin/python benchmarks/probe_speed.py --device cpu --model tiny
    .venv/bin/python benchmarks/probe_speed.py --device cuda --model base --seq-len 128
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from weightguard.probes import banks
from weightguard.probes.batching import MicroBatcher, classify, forward_mode, select_device, tokenise
from weightguard.probes.p1_insertion import POSITIONS, _items


def build(model_size: str, vocab_size: int) -> tuple[BertForSequenceClassification, PreTrainedTokenizerFast]:
    words = [f"w{i}" for i in range(vocab_size - 5)]
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    if model_size == "base":
        config = BertConfig(vocab_size=len(vocab), num_labels=2)  # 12 layers, 768 hidden: ~110M with a 30k vocab
    else:
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
            num_labels=2,
        )
    torch.manual_seed(0)
    return BertForSequenceClassification(config).eval(), tok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--model", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--seq-len", type=int, default=32, help="approximate tokens per triggered sequence")
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--inputs", type=int, default=32)
    parser.add_argument("--naive-pairs", type=int, default=300, help="pairs timed in the naive loop")
    parser.add_argument("--tokens", type=int, default=32768, help="starting micro-batch budget in tokens")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    device = select_device(args.device)
    model, tok = build(args.model, 30522 if args.model == "base" else 2000)
    model.to(device)
    rng = random.Random(0)
    words = [f"w{i}" for i in range(1000)]
    body = max(4, args.seq_len - 4)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(body * 3 // 4, body))) for _ in range(args.inputs)]
    cands = [
        banks.Candidate(w, tuple(tok(w, add_special_tokens=False)["input_ids"]), "vocab")
        for w in rng.sample(words, args.candidates)
    ]
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {args.model} BERT, {params / 1e6:.1f}M parameters, device {device}, "
        f"{len(cands)} candidates x {len(texts)} inputs x {len(POSITIONS)} positions"
    )

    # Naive loop: one string, one tokenisation, one forward per pair (start/end/random position).
    pairs = [(c, t, p) for c in cands for t in texts for p in POSITIONS][: args.naive_pairs]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with forward_mode(device):
        for c, t, _ in pairs[:5]:
            model(**tok(f"{c.text} {t}", return_tensors="pt").to(device))
    sync()
    began = time.perf_counter()
    with forward_mode(device):
        for c, t, pos in pairs:
            ws = t.split()
            at = {"start": 0, "end": len(ws)}.get(pos, rng.randint(0, len(ws)))
            enc = tok(" ".join([*ws[:at], c.text, *ws[at:]]), return_tensors="pt").to(device)
            model(**enc).logits.softmax(-1).cpu()
    sync()
    naive = len(pairs) / (time.perf_counter() - began)

    # Batched P1 path (tokenise once, index arithmetic, length buckets, token-sized micro-batches).
    batcher = MicroBatcher(device, args.tokens, model.config.hidden_size)
    data = tokenise(tok, texts, max_body=body + 8)
    trig, trig_len = banks.table(cands, tok.pad_token_id)
    items = _items(data.lengths, len(cands), 0, POSITIONS)
    classify(model, data, trig, trig_len, items, batcher, pad=tok.pad_token_id)  # warm-up
    sync()
    began = time.perf_counter()
    classify(model, data, trig, trig_len, items, batcher, pad=tok.pad_token_id)
    sync()
    batched = len(items.cand) / (time.perf_counter() - began)
    print(f"naive per-pair loop : {naive:10.1f} sequences/s ({len(pairs)} pairs)")
    print(
        f"batched P1          : {batched:10.1f} sequences/s ({len(items.cand)} sequences, "
        f"micro-batch budget {batcher.tokens} tokens)"
    )
    print(f"ratio batched/naive : {batched / naive:10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
