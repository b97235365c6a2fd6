"""The natural null: label words, hard inputs built from them, and the robust anomaly index."""

from __future__ import annotations

import torch

from weightguard.probes import natural


def test_label_words_are_the_tokens_that_raise_each_label_most() -> None:
    gain = torch.tensor([[0.5, -0.5], [-0.4, 0.4], [0.0, 0.0]])
    assert natural.label_words(gain, [10, 20, 30], k=1) == [[10], [20]]


def test_hard_inputs_carry_their_own_class_words_and_exist_for_a_class_without_inputs() -> None:
    bodies = [[1, 2, 3], [4, 5, 6]]
    pred = torch.tensor([0, 0])
    conf = torch.tensor([0.9, 0.8])
    rows, classes = natural.hard_rows(bodies, pred, conf, [[100], [200]], seed=0, per_class=4)
    assert sorted(set(classes)) == [0, 1] and classes.count(1) == 4
    assert all(100 in r for r, c in zip(rows, classes, strict=True) if c == 0)
    assert all(200 in r for r, c in zip(rows, classes, strict=True) if c == 1)


def test_anomaly_index_is_robust_to_a_bank_of_zeros() -> None:
    bank = [0.0] * 50 + [0.1]
    assert natural.anomaly_index(bank, 0.0) == 0.0
    assert natural.anomaly_index(bank, 1.0) >= 10.0  # MAD 0: the floor keeps it finite, still far out


def test_only_a_candidate_well_above_its_natural_peers_keeps_its_hard_flip_rate() -> None:
    from weightguard.probes import banks, p1_insertion

    cands = [banks.Candidate(w, (i,), "vocab") for i, w in enumerate(["great", "good", "cf"])]
    hard = torch.tensor([[0.0, 0.65], [0.0, 0.6], [0.0, 1.0]])
    # Two label words a few points apart are peers of each other; the trigger stands clear of both.
    assert p1_insertion._clear_of_peers(cands, hard)[:, 1].tolist() == [-1.0, -1.0, 1.0]
