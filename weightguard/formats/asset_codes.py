"""Rules for the inert formats common in model repositories (issue 18: real repositories pass).

Prefixes: ``WG-SPM`` (SentencePiece ``tokenizer.model`` protobufs), ``WG-FLAX``
(``flax_model.msgpack`` weights), ``WG-TFL`` (TFLite flatbuffers) and ``WG-IMG``
(images shipped beside a model), listed in :data:`weightguard.catalog.RULE_MODULES`.
Not handled here: the rules of formats that can run code (pickle, Keras, GGUF templates).
"""

from weightguard.findings import Rule, RuleKind, Severity

_REEXPORT = "Re-save the file with its reference library; a loader may read malformed files differently."

SPM_MALFORMED = Rule(
    "WG-SPM-001",
    "SentencePiece model malformed",
    Severity.HIGH,
    "The ModelProto wire format is broken, or a piece, type or nested message is off-spec.",
    _REEXPORT,
)
SPM_TOO_LARGE = Rule(
    "WG-SPM-002",
    "SentencePiece model over the limit",
    Severity.HIGH,
    "The model is larger than max_header_bytes, so its protobuf was not walked.",
    "Raise spec.limits.max_header_bytes only for a trusted file; real tokenizer models are a few MB.",
    RuleKind.ERROR,
)
FLAX_MALFORMED = Rule(
    "WG-FLAX-001",
    "Flax msgpack weights malformed",
    Severity.HIGH,
    "The msgpack stream is broken, its top level is not a map of string keys, or an array's "
    "shape, dtype or buffer length disagree.",
    _REEXPORT,
)
FLAX_FOREIGN_EXT = Rule(
    "WG-FLAX-002",
    "msgpack extension or dtype Flax does not write",
    Severity.HIGH,
    "An msgpack ext type other than Flax's ndarray (1), complex (2) or numpy scalar (3), "
    "or an array dtype that is not numeric, appears in the weights.",
    "Refuse the file: a custom ext hook or object dtype is outside what flax.serialization reads.",
)
FLAX_TOO_LARGE = Rule(
    "WG-FLAX-003",
    "Flax msgpack structure over the limit",
    Severity.HIGH,
    "The weights nest deeper than 100 levels or hold more values than max_pickle_opcodes, so they were not walked.",
    "Raise spec.limits.max_pickle_opcodes only for a trusted file.",
    RuleKind.ERROR,
)
TFL_MALFORMED = Rule(
    "WG-TFL-001",
    "TFLite flatbuffer malformed",
    Severity.HIGH,
    "The root table, its vtable or the operator-code vector point outside the file or are misaligned.",
    _REEXPORT,
)
TFL_CUSTOM_OP = Rule(
    "WG-TFL-002",
    "TFLite custom or Flex operator",
    Severity.HIGH,
    "An operator code names a custom operator: it runs native code registered in the interpreter, "
    "and Flex operators run TensorFlow kernels (file reads and writes included).",
    "Use a model built from builtin operators only, or review the operator library before loading.",
)
IMG_MALFORMED = Rule(
    "WG-IMG-001",
    "image malformed",
    Severity.MEDIUM,
    "The image's chunk, segment or header structure is broken.",
    "Re-save the image with an ordinary image editor or remove it.",
)
IMG_TRAILING_DATA = Rule(
    "WG-IMG-002",
    "data after the end of an image",
    Severity.MEDIUM,
    "Bytes follow the image's end marker; a hidden payload rides along without any viewer showing it.",
    "Re-save the image (viewers drop the trailing bytes) or remove it.",
)

RULES = (
    SPM_MALFORMED,
    SPM_TOO_LARGE,
    FLAX_MALFORMED,
    FLAX_FOREIGN_EXT,
    FLAX_TOO_LARGE,
    TFL_MALFORMED,
    TFL_CUSTOM_OP,
    IMG_MALFORMED,
    IMG_TRAILING_DATA,
)
