"""Rules emitted by the conversion stage."""

from weightguard.findings import Rule, RuleKind, Severity

SCAN_BLOCKED = Rule(
    "WG-CNV-001",
    "conversion refused: scan blocked the file",
    Severity.HIGH,
    "The static scan did not approve this file, so it was never loaded or converted.",
    "Fix or remove the file; weightguard never loads what its scan did not approve.",
)
NON_TENSOR_DROPPED = Rule(
    "WG-CNV-002",
    "non-tensor entries dropped",
    Severity.MEDIUM,
    "The checkpoint holds entries that are not tensors; safetensors cannot carry them.",
    "Set conversion.allow_dropping_non_tensor if losing them is acceptable (they are listed).",
)
ALIAS_REMOVED = Rule(
    "WG-CNV-003",
    "shared tensor stored once",
    Severity.INFO,
    "Several names shared one storage; one name was kept and the others recorded in the metadata.",
)
UNSUPPORTED_CONTENT = Rule(
    "WG-CNV-004",
    "content cannot be converted",
    Severity.HIGH,
    "The checkpoint holds a tensor type safetensors cannot represent (sparse, quantized, unknown dtype).",
    "Convert it with the framework that made it, then verify the safetensors output.",
    RuleKind.ERROR,
)
PROOF_FAILED = Rule(
    "WG-CNV-005",
    "conversion proof failed",
    Severity.CRITICAL,
    "Reloading the output did not give back every tensor bit for bit.",
    "Report this as a weightguard bug; the output was not kept.",
    RuleKind.ERROR,
)
STATE_DICT_UNWRAPPED = Rule(
    "WG-CNV-006",
    "weights taken from a checkpoint entry",
    Severity.INFO,
    "The tensors were taken from one entry of a training checkpoint; the entries beside it were left out.",
    "Check that the entry named is the model's weights; name another with --key or spec.conversion.weight_keys.",
)

UNCONVERTIBLE_FILE = Rule(
    "WG-CNV-007",
    "pickle-based file has no safetensors form",
    Severity.HIGH,
    "A raw pickle, joblib or TorchScript file cannot become safetensors and would carry pickles into the output.",
    "Remove the file from the model, or export its tensors to a state dict first, then convert.",
)

WEIGHTS_NOT_IDENTIFIED = Rule(
    "WG-CNV-008",
    "weights not identified in the checkpoint",
    Severity.HIGH,
    "The checkpoint holds no tensors at its top level and no single entry weightguard knows holds the weights.",
    "Name the entry holding the weights: convert --key model (dotted for nested: model.state_dict), "
    "or list it in spec.conversion.weight_keys.",
)

RULES = (
    SCAN_BLOCKED,
    NON_TENSOR_DROPPED,
    ALIAS_REMOVED,
    UNSUPPORTED_CONTENT,
    PROOF_FAILED,
    STATE_DICT_UNWRAPPED,
    UNCONVERTIBLE_FILE,
    WEIGHTS_NOT_IDENTIFIED,
)
