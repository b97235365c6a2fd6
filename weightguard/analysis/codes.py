"""Rules of the static pickle analysis (raw pickles, joblib, and every stream other analyzers hand over).

Severity follows one principle: anything a real unpickler could use to run
code the allowlist does not vouch for blocks (HIGH or CRITICAL); facts that
only explain the file (a nested pickle that was analysed, an extra global the
policy allowed) are INFO/LOW.
"""

from weightguard.findings import Rule, RuleKind, Severity

PICKLE_REFUSED = Rule(
    "WG-PKL-000",
    "pickle refused by policy",
    Severity.HIGH,
    "The policy sets spec.pickle.mode to refuse, and this file contains a pickle stream.",
    "Convert the model to safetensors, or set spec.pickle.mode: analyze to decide by allowlist.",
)
CODE_EXECUTION_GLOBAL = Rule(
    "WG-PKL-001",
    "code-execution global",
    Severity.CRITICAL,
    "The pickle imports a global known to run code, reach the system or resolve arbitrary callables.",
    "Do not load this file. Treat the model and its source as compromised.",
)
GLOBAL_NOT_ALLOWED = Rule(
    "WG-PKL-002",
    "global not in allowlist",
    Severity.HIGH,
    "The pickle imports a global that is not in weightguard's allowlist of weight-loading globals.",
    "If the global is a harmless data type, add it to spec.pickle.allowed_globals with a reason; else refuse.",
)
ATTRIBUTE_WALK = Rule(
    "WG-PKL-003",
    "attribute walk in a global name",
    Severity.HIGH,
    "A protocol-4 dotted name walks attributes off a module (e.g. builtins print.__class__...).",
    "Do not load this file; legitimate weights never need dotted global names.",
)
INDIRECT_GLOBAL = Rule(
    "WG-PKL-004",
    "non-constant global or indirect call",
    Severity.HIGH,
    "A STACK_GLOBAL operand or a called object is computed at load time, so no scanner can name it.",
    "Do not load this file; this is the memo/stack trickery used to evade scanners.",
)
EXTENSION_CODE = Rule(
    "WG-PKL-005",
    "extension-registry opcode",
    Severity.HIGH,
    "EXT1/EXT2/EXT4 name a global through copyreg's extension registry, invisible to the stream.",
    "Do not load this file; weight files never use the extension registry.",
)
MALFORMED_STREAM = Rule(
    "WG-PKL-006",
    "malformed pickle stream",
    Severity.HIGH,
    "The stream is invalid (bad opcode, truncation, missing STOP, stack underflow, memo miss, bad argument).",
    "Do not load it: a loader runs everything before the broken point (the 'nullifAI' trick).",
)
TRAILING_DATA = Rule(
    "WG-PKL-007",
    "data after STOP",
    Severity.MEDIUM,
    "Bytes follow the pickle's STOP opcode that are not another pickle stream.",
    "Remove the trailing bytes, or find out what else reads this file.",
)
STACKED_STREAMS = Rule(
    "WG-PKL-008",
    "several pickle streams in one file",
    Severity.MEDIUM,
    "The file holds more pickle streams than its format uses; each one was analysed too.",
    "Make sure the loader reads only what you expect; plain pickle files hold one stream.",
)
NESTED_CONTENT = Rule(
    "WG-PKL-009",
    "nested pickle or archive in a constant",
    Severity.INFO,
    "A bytes/str constant holds a pickle or an archive; it was analysed like a file of its own.",
    "Nothing to do unless the nested content has findings of its own.",
)
NESTED_DESERIALIZATION = Rule(
    "WG-PKL-010",
    "nested deserialization call",
    Severity.CRITICAL,
    "The pickle imports a loader (pickle.loads, torch.load, numpy.load, ...) that deserializes more data.",
    "Do not load this file: the nested payload runs with the loader's full privileges.",
)
GLOBAL_MUTATION = Rule(
    "WG-PKL-011",
    "attribute smuggling on a global",
    Severity.HIGH,
    "BUILD or a container opcode mutates a class or function object itself instead of an instance.",
    "Do not load this file; this rewires functions or classes of the loading process.",
)
UNUSED_VALUES = Rule(
    "WG-PKL-012",
    "values left on the stack",
    Severity.LOW,
    "The stream leaves values or marks on the stack at STOP, which standard picklers never do.",
    "Usually a hand-made pickle; the values were analysed like the rest.",
)
EXTRA_ALLOWED = Rule(
    "WG-PKL-013",
    "global allowed by policy",
    Severity.INFO,
    "A global outside the built-in allowlist was accepted because spec.pickle.allowed_globals lists it.",
    "Review the policy entry's reason from time to time.",
)
PERSISTENT_ID = Rule(
    "WG-PKL-014",
    "persistent id in a plain pickle",
    Severity.LOW,
    "A plain pickle uses PERSID/BINPERSID; only a custom loader (with its own persistent_load) can read it.",
    "Find out which loader reads the file; its persistent_load decides what these ids become.",
)
JOBLIB_ARRAY = Rule(
    "WG-PKL-015",
    "joblib array not understood",
    Severity.HIGH,
    "A joblib NumpyArrayWrapper has a shape/dtype weightguard cannot size, so the bytes after it are unknown.",
    "Re-save the arrays with a current joblib and numpy, or convert them to safetensors / .npy.",
)
JOBLIB_COMPRESSION = Rule(
    "WG-PKL-016",
    "joblib compression not supported",
    Severity.HIGH,
    "The joblib file uses a compression weightguard cannot decompress (lz4), so it was not analysed.",
    "Re-save the file uncompressed or with zlib/gzip/bz2/xz.",
    RuleKind.SKIPPED,
)
JOBLIB_FRAME = Rule(
    "WG-PKL-017",
    "joblib array inside a pickle frame",
    Severity.HIGH,
    "A joblib array starts inside a pickle FRAME: joblib.load reads it from after the frame while the "
    "frame's rest runs as opcodes (issue 15).",
    "Do not load the file; re-save it with joblib.dump (which never writes an array inside a frame).",
)
JOBLIB_VIEWS_DIVERGE = Rule(
    "WG-PKL-018",
    "pickle.load and joblib.load read different opcodes",
    Severity.HIGH,
    "Read with plain pickle.load, bytes that joblib.load takes as array data are opcodes naming globals "
    "(issue 15): the file runs different code depending on the loader.",
    "Do not load the file with pickle.load or joblib.load; re-save it with joblib.dump.",
)

RULES = (
    PICKLE_REFUSED,
    CODE_EXECUTION_GLOBAL,
    GLOBAL_NOT_ALLOWED,
    ATTRIBUTE_WALK,
    INDIRECT_GLOBAL,
    EXTENSION_CODE,
    MALFORMED_STREAM,
    TRAILING_DATA,
    STACKED_STREAMS,
    NESTED_CONTENT,
    NESTED_DESERIALIZATION,
    GLOBAL_MUTATION,
    UNUSED_VALUES,
    EXTRA_ALLOWED,
    PERSISTENT_ID,
    JOBLIB_ARRAY,
    JOBLIB_COMPRESSION,
    JOBLIB_FRAME,
    JOBLIB_VIEWS_DIVERGE,
)
