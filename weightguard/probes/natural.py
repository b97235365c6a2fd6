"""The natural null for text probes: what ordinary words of *this* model do, and inputs built to resist them.

Random-token controls answer "is this candidate stronger than noise?", which any
sentiment word of a sentiment model is (issue 19: ordinary words were blocked
as triggers). A backdoor differs in kind: it flips inputs the model holds
*strongly* in another class, whatever their content, and it is an outlier
against the model's own vocabulary. This module supplies the pieces for that
test, all from the model itself (no user data):

* synthetic in-vocabulary inputs, so a model whose vocabulary the shipped
  English inputs do not cover still has confident inputs of every class;
* each label's strongest natural words: the bank tokens whose insertion raises
  the label's probability most on ordinary inputs;
* *hard* inputs per class: its most confident inputs with several of its own
  strongest words inserted, kept only when the model is then very sure of them;
* a robust (median / MAD) anomaly index of a candidate against the bank, and
  :data:`PEER_MARGIN`: how far a trigger's hard flip rate must stand above its
  strongest natural *peer* (same length, no shared token). Against the whole
  bank, whose median is near 0, a larger model's strongest label words look
  like outliers (they flip 57-87 % of the hard inputs); against each other
  they do not, while a trigger flips ~100 % with its peers far below.

Not handled here: running the model (:mod:`weightguard.probes.batching`), or
deciding a verdict (:mod:`weightguard.probes.p1_insertion` and the suite).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

HARD_PER_CLASS = 24  # hard inputs kept per source class: enough for a rate, cheap on CPU
LABEL_WORDS = 8  # strongest natural words remembered per label
HARD_INSERTS = 3  # own-class words added to each hard input
HARD_CONFIDENCE = 0.9
# A trigger's hard flip rate must exceed its strongest natural peer's (same length, no shared token) by this
# much; single words, then pairs. Pairs are built from the strongest words, so a pair of two label words
# outruns its peers (pairs of weaker words) by more than a single label word outruns the next one (issue 19).
PEER_MARGIN = (0.1, 0.3)
MAD_FLOOR = 0.02  # flip rates are coarse: a bank with MAD 0 must not make every nonzero rate infinite


def synthetic_rows(pool: Sequence[int], count: int, seed: int, lo: int = 5, hi: int = 11) -> list[list[int]]:
    """``count`` seeded random sequences of ordinary vocabulary tokens (lengths ``lo``..``hi``)."""
    rng = random.Random(seed ^ 0xA11)  # noqa: S311 - seeded for reproducibility, not security
    return [[rng.choice(pool) for _ in range(rng.randint(lo, hi))] for _ in range(count)]


def label_words(gain: torch.Tensor, ids: Sequence[int], k: int = LABEL_WORDS) -> list[list[int]]:
    """Per label, the ``k`` token ids whose insertion raises that label's probability most.

    ``gain`` is (C, L): mean probability gain per single-token candidate and label;
    ``ids`` the candidates' token ids. Only tokens with a positive gain count.
    """
    out = []
    for t in range(gain.shape[1]):
        order = torch.argsort(gain[:, t], descending=True)[:k].tolist()
        out.append([ids[i] for i in order if float(gain[i, t]) > 0])
    return out


def hard_rows(
    bodies: Sequence[Sequence[int]],
    pred: torch.Tensor,
    conf: torch.Tensor,
    words: Sequence[Sequence[int]],
    seed: int,
    per_class: int = HARD_PER_CLASS,
) -> tuple[list[list[int]], list[int]]:
    """Candidate hard inputs: each class's most confident inputs with its own strongest words inserted.

    Returns the rows and their intended classes; the caller keeps only the rows
    the model then classifies as that class with :data:`HARD_CONFIDENCE`.
    """
    rng = random.Random(seed ^ 0x4A2D)  # noqa: S311 - seeded for reproducibility, not security
    rows: list[list[int]] = []
    classes: list[int] = []
    for c, own in enumerate(words):
        if not own:
            continue
        mine = [i for i in torch.argsort(conf, descending=True).tolist() if int(pred[i]) == c][:per_class]
        for i in mine:
            row = list(bodies[i])
            for _ in range(HARD_INSERTS):
                row.insert(rng.randint(0, len(row)), rng.choice(own))
            rows.append(row)
            classes.append(c)
        # Inputs built only from the class's own words and the fillers of its inputs: strongly of class c
        # even when the shipped inputs hold none of it (an unusual vocabulary, a rare label).
        filler = [tok for i in mine for tok in bodies[i]] or list(own)
        for _ in range(max(0, per_class - len(mine))):
            row = [rng.choice(filler) for _ in range(rng.randint(3, 6))]
            for _ in range(HARD_INSERTS + 1):
                row.insert(rng.randint(0, len(row)), rng.choice(own))
            rows.append(row)
            classes.append(c)
    return rows, classes


def anomaly_index(bank: Sequence[float], value: float) -> float:
    """How far ``value`` sits above the bank's median, in robust (MAD, consistency 1.4826) units."""
    if not bank:
        return 0.0
    ordered = sorted(bank)
    med = ordered[len(ordered) // 2]
    mad = sorted(abs(v - med) for v in ordered)[len(ordered) // 2] * 1.4826
    return (value - med) / max(mad, MAD_FLOOR)


def cosine_to_words(table: torch.Tensor, token: int, words: Sequence[int]) -> float:
    """Cosine similarity of ``token``'s embedding to the mean embedding of ``words`` (itself left out)."""
    others = [w for w in words if w != token]
    if not others:
        return 0.0
    centre = table[others].mean(0)
    return float(torch.nn.functional.cosine_similarity(table[token], centre, dim=0))
