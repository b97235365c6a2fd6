"""Keras rules added for issue 15 (Keras objects whose deserializer runs a pickle or reads a file).

WG-KERAS-001 to 007 live in :mod:`weightguard.formats.header_codes`, which is at
the module size limit; these follow them, emitted by :mod:`weightguard.formats.keras`
and listed in :data:`weightguard.catalog.RULE_MODULES`. Not handled here: the checks.
"""

from weightguard.findings import Rule, Severity

KERAS_PICKLED_MODULE = Rule(
    "WG-KERAS-008",
    "Keras layer holding a pickled torch module",
    Severity.CRITICAL,
    "A TorchModuleWrapper's config holds a pickled torch module, which Keras unpickles with torch.load, weights_only off.",
    "Refuse the model: unpickling runs code (Keras 3.11.0-3.11.2 even in safe mode, any version with safe_mode=False).",
)
KERAS_FILE_REFERENCE = Rule(
    "WG-KERAS-009",
    "Keras layer reading a file named in its config",
    Severity.HIGH,
    "A lookup layer's vocabulary is a path, which Keras opens while loading (CVE-2025-12058), even in safe mode.",
    "Refuse the model, or re-save it with the vocabulary inlined as a list.",
)

RULES = (KERAS_PICKLED_MODULE, KERAS_FILE_REFERENCE)
