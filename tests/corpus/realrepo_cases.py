"""Corpus cases of issue 18 (real repositories pass): repository assets, honest and disguised.

Approved: a SentencePiece ``tokenizer.model``, Flax ``flax_model.msgpack``
weights and the images a model card shows, each built field by field
(:mod:`tests.real_repo_builders`). Blocked: pickles named like those assets
(the name must never decide), and a PNG carrying a pickle after its end.
Nothing here loads anything.
"""

from __future__ import annotations

from tests.corpus.asm import call, global_, program
from tests.corpus.spec import CaseList, Payload
from tests.real_repo_builders import flax_weights, jpeg, png, sentencepiece_model

REAL_REPO_BLOCKED = CaseList("blocked")
REAL_REPO_APPROVED = CaseList("approved")
_ISSUE = "issue 18 (real repositories pass)"


def _system_pickle(p: Payload) -> bytes:
    return program(call(global_("posix", "system"), p.shell))


@REAL_REPO_BLOCKED.case("realrepo/llama/tokenizer.model", f"{_ISSUE}: a pickle named like a SentencePiece model")
def pickle_as_tokenizer_model(p: Payload) -> bytes:
    return _system_pickle(p)


@REAL_REPO_BLOCKED.case("realrepo/bert/flax_model.msgpack", f"{_ISSUE}: a pickle named like Flax weights")
def pickle_as_flax_weights(p: Payload) -> bytes:
    return _system_pickle(p)


@REAL_REPO_BLOCKED.case("realrepo/gpt2/image.png", f"{_ISSUE}: a pickle named like an image")
def pickle_as_image(p: Payload) -> bytes:
    return _system_pickle(p)


@REAL_REPO_BLOCKED.case("realrepo/gpt2/diagram.png", f"{_ISSUE}: a PNG with a pickle after IEND")
def png_with_pickle_after_its_end(p: Payload) -> bytes:
    return png() + _system_pickle(p)


@REAL_REPO_APPROVED.case("realrepo-clean/llama/tokenizer.model", f"{_ISSUE}: SentencePiece ModelProto")
def tokenizer_model(_: Payload) -> bytes:
    return sentencepiece_model()


@REAL_REPO_APPROVED.case("realrepo-clean/bert/flax_model.msgpack", f"{_ISSUE}: flax.serialization.to_bytes layout")
def flax_model(_: Payload) -> bytes:
    return flax_weights()


@REAL_REPO_APPROVED.case("realrepo-clean/card/diagram.png", f"{_ISSUE}: model card image")
def card_png(_: Payload) -> bytes:
    return png()


@REAL_REPO_APPROVED.case("realrepo-clean/card/photo.jpg", f"{_ISSUE}: model card photo")
def card_jpeg(_: Payload) -> bytes:
    return jpeg()
