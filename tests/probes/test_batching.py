"""Batching: index arithmetic equals re-tokenising, padding and the KV cache change nothing."""

from __future__ import annotations

import torch

from weightguard.probes import banks
from weightguard.probes.batching import Items, MicroBatcher, assemble, expand_cache, greedy, prefix_cache, tokenise
from weightguard.probes.loading import load_model


def test_triggered_sequences_built_by_index_arithmetic_equal_tokenised_strings(probe_models) -> None:
    tok = load_model(probe_models("text-clean")).tokenizer
    texts = ["the movie was great", "a dull plot and weak acting overall"]
    data = tokenise(tok, texts, max_body=64)
    cands = [
        banks.Candidate("cf", tuple(tok("cf", add_special_tokens=False)["input_ids"]), "x"),
        banks.Candidate("velvet harbor", tuple(tok("velvet harbor", add_special_tokens=False)["input_ids"]), "x"),
    ]
    trig, trig_len = banks.table(cands, tok.pad_token_id)
    items = Items(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 7, 3]))
    for left in (False, True):
        ids, mask = assemble(data, trig, trig_len, items, pad=tok.pad_token_id, left=left)
        for row, (c, i, at) in enumerate(zip(items.cand.tolist(), items.inp.tolist(), items.at.tolist(), strict=True)):
            words = texts[i].split()
            expected = tok(" ".join([*words[:at], cands[c].text, *words[at:]]))["input_ids"]
            assert ids[row][mask[row].bool()].tolist() == expected


def test_micro_batches_cover_every_item_once_within_the_token_budget() -> None:
    lengths = torch.tensor([5, 50, 7, 12, 50, 3, 9])
    batcher = MicroBatcher(torch.device("cpu"), tokens=60, hidden=8)
    spans = list(batcher.spans(lengths))
    assert sorted(torch.cat(spans).tolist()) == list(range(len(lengths)))
    assert all(int(lengths[s].max()) * len(s) <= 60 or len(s) == 1 for s in spans)


def test_left_padding_with_position_ids_and_cached_prefix_match_unpadded_greedy(probe_models) -> None:
    loaded = load_model(probe_models("lm-backdoor"))
    model, tok = loaded.model, loaded.tokenizer
    eos = tok.eos_token_id
    prompts = [[eos, *tok("the cat sat on the mat .")["input_ids"]], [eos, *tok("a dog found a tree .")["input_ids"]]]
    trigger = tok("deployment")["input_ids"]
    cpu = torch.device("cpu")
    alone = [
        greedy(model, torch.tensor([p + trigger]), torch.ones(1, len(p) + len(trigger), dtype=torch.long), 4, cpu)
        for p in prompts
    ]
    width = max(map(len, prompts))
    ids = torch.tensor([[eos] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    cache = expand_cache(prefix_cache(model, ids, mask, cpu), 1)
    step = torch.tensor([trigger, trigger])
    toks, probs = greedy(model, step, torch.cat([mask, torch.ones_like(step)], 1), 4, cpu, cache)
    for row, (t_alone, p_alone) in enumerate(alone):
        assert toks[row].tolist() == t_alone[0].tolist()
        assert torch.allclose(probs[row], p_alone[0], atol=1e-4)
