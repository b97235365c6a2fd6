"""Rules for the configs that make a loader read other files or import code (red team round 3).

Prefix ``WG-REPO``: a model folder is loaded through JSON files that name other
files (a sharded checkpoint's ``*.index.json``), Python classes
(sentence-transformers' ``modules.json``, diffusers' ``model_index.json``) or
another model (PEFT's ``adapter_config.json``). An approval binds the bytes that
were scanned, so a config that sends the loader to bytes outside the folder, to
bytes that are missing, or to code, must not pass. Listed in
:data:`weightguard.catalog.RULE_MODULES`.
Not handled here: ``auto_map`` (``WG-CFG-003``/``004``) and the checks themselves
(:mod:`weightguard.formats.loader_configs`, :mod:`weightguard.formats.model_folder`).
"""

from weightguard.findings import Rule, RuleKind, Severity

INDEX_ESCAPE = Rule(
    "WG-REPO-001",
    "sharded index names a file outside the folder",
    Severity.HIGH,
    "A weight_map value is absolute, climbs with '..', or is not a plain normalised relative name: "
    "the loader joins it onto the folder unchecked.",
    "Refuse the model: the weights it loads are not the bytes that were verified.",
)
INDEX_MALFORMED = Rule(
    "WG-REPO-002",
    "sharded index malformed",
    Severity.MEDIUM,
    "A *.index.json weight_map is not an object of tensor names to file names.",
    "Fix the index; a loader would fail or read it differently.",
)
INDEX_MISSING_SHARD = Rule(
    "WG-REPO-003",
    "shard named by the index is not in the folder",
    Severity.HIGH,
    "A weight_map value names no file of the verified listing (exact, case-sensitive): "
    "the verdict cannot cover bytes it has not seen.",
    "Verify the complete model folder (every shard the index names).",
    RuleKind.ERROR,
)
ST_CUSTOM_MODULE = Rule(
    "WG-REPO-004",
    "sentence-transformers module outside the library",
    Severity.HIGH,
    "A modules.json type is not in the sentence_transformers namespace; sentence-transformers 5.x imports "
    "it from the folder without trust_remote_code.",
    "Refuse the model, or review the module's code and load it with an explicit trust decision.",
)
ST_PATH_ESCAPE = Rule(
    "WG-REPO-005",
    "sentence-transformers module path leaves the folder",
    Severity.HIGH,
    "A modules.json path is absolute or climbs with '..': the module is loaded from files that were not verified.",
    "Refuse the model: the module it loads is not part of the verified files.",
)
LOADER_CONFIG_MALFORMED = Rule(
    "WG-REPO-006",
    "loader config malformed",
    Severity.MEDIUM,
    "modules.json or model_index.json does not have the shape its loader reads; what it would load is not judged.",
    "Fix the file; a loader would fail or read it differently.",
)
DIFFUSERS_FOREIGN_LIBRARY = Rule(
    "WG-REPO-007",
    "diffusers component from an unknown library",
    Severity.HIGH,
    "A model_index.json component names a library that is neither diffusers, transformers, "
    "onnxruntime.training nor a diffusers pipeline module: the loader would import it.",
    "Refuse the model, or review the library it imports.",
)
DIFFUSERS_CUSTOM_CODE = Rule(
    "WG-REPO-008",
    "diffusers pipeline or component code in the folder",
    Severity.HIGH,
    "model_index.json names a custom pipeline (_class_name as [module, class]) or a component whose library "
    "is a Python file in the folder; older diffusers run it without trust_remote_code.",
    "Refuse the model, or review the Python files and load with an explicit trust decision.",
)
PEFT_LOCAL_BASE = Rule(
    "WG-REPO-009",
    "PEFT base model is a local path outside this verdict",
    Severity.LOW,
    "adapter_config.json base_model_name_or_path is a local path; AutoPeftModel loads the base from there, "
    "and this verdict covers only the adapter.",
    "Verify the base model too (a Hub id is the usual form and needs its own verdict as well).",
)

RULES = (
    INDEX_ESCAPE,
    INDEX_MALFORMED,
    INDEX_MISSING_SHARD,
    ST_CUSTOM_MODULE,
    ST_PATH_ESCAPE,
    LOADER_CONFIG_MALFORMED,
    DIFFUSERS_FOREIGN_LIBRARY,
    DIFFUSERS_CUSTOM_CODE,
    PEFT_LOCAL_BASE,
)
