"""Rules emitted by the header validators of the non-pickle formats.

Prefixes: ``WG-ST`` (safetensors), ``WG-GGUF`` (GGUF), ``WG-ONNX`` (ONNX
protobuf), ``WG-KERAS`` (Keras model configs, in ``.keras`` zips, ``.h5``
attributes or loose JSON), ``WG-H5`` (HDF5 containers) and ``WG-CFG`` (JSON
configs). One rule per malformation or threat, in the manner of
``SafeTensorError`` in ``safetensors/src/tensor.rs``. Not handled here: the
container rules (``WG-ZIP``...) and the pickle rules.
"""

from weightguard.findings import Rule, RuleKind, Severity

_TEMPLATE_FIX = "Refuse the model; never render its chat template with an unsandboxed Jinja environment."
_REEXPORT = "Re-export the model with the reference library; a loader may read malformed files differently."

# --- safetensors -------------------------------------------------------------
ST_TRUNCATED = Rule(
    "WG-ST-001",
    "safetensors file truncated",
    Severity.HIGH,
    "The file is shorter than the 8-byte little-endian header length.",
    _REEXPORT,
)
ST_HEADER_TOO_LARGE = Rule(
    "WG-ST-002",
    "safetensors header over the limit",
    Severity.HIGH,
    "The declared JSON header is larger than max_header_bytes, so it was not analysed.",
    "Raise spec.limits.max_header_bytes only for a trusted file; safetensors itself refuses headers over 100 MB.",
    RuleKind.ERROR,
)
ST_HEADER_PAST_EOF = Rule(
    "WG-ST-003",
    "safetensors header past end of file",
    Severity.HIGH,
    "The declared header length is below 2 or runs past the end of the file.",
    _REEXPORT,
)
ST_HEADER_NOT_UTF8 = Rule(
    "WG-ST-004",
    "safetensors header not UTF-8",
    Severity.HIGH,
    "The JSON header is not valid UTF-8.",
    _REEXPORT,
)
ST_HEADER_NOT_JSON = Rule(
    "WG-ST-005",
    "safetensors header not strict JSON",
    Severity.HIGH,
    "The header is not one strict JSON object (syntax error, NaN/Infinity, garbage after it, too deep).",
    _REEXPORT,
)
ST_HEADER_LAYOUT = Rule(
    "WG-ST-006",
    "safetensors header layout off-spec",
    Severity.LOW,
    "The header does not start with '{' or is padded with whitespace other than spaces (the spec's only padding).",
    _REEXPORT,
)
ST_DUPLICATE_KEY = Rule(
    "WG-ST-007",
    "duplicate key in safetensors header",
    Severity.HIGH,
    "A JSON key appears twice; safetensors keeps the last one, other readers may keep the first.",
    "Refuse the file: two parsers would see different tensors.",
)
ST_NOT_AN_OBJECT = Rule(
    "WG-ST-008",
    "safetensors header not an object",
    Severity.HIGH,
    "The header's top-level JSON value is not an object of tensor entries.",
    _REEXPORT,
)
ST_BAD_METADATA = Rule(
    "WG-ST-009",
    "safetensors metadata not string to string",
    Severity.HIGH,
    "__metadata__ is not an object whose values are all strings, which safetensors refuses.",
    _REEXPORT,
)
ST_BAD_ENTRY = Rule(
    "WG-ST-010",
    "malformed safetensors tensor entry",
    Severity.HIGH,
    "A tensor entry is not an object with dtype, shape and data_offsets.",
    _REEXPORT,
)
ST_UNKNOWN_FIELD = Rule(
    "WG-ST-011",
    "unknown field in safetensors tensor entry",
    Severity.MEDIUM,
    "A tensor entry carries a key other than dtype, shape and data_offsets (hidden data the loader ignores).",
    _REEXPORT,
)
ST_BAD_DTYPE = Rule(
    "WG-ST-012",
    "unknown safetensors dtype",
    Severity.HIGH,
    "A tensor's dtype is not one the safetensors library accepts.",
    _REEXPORT,
)
ST_BAD_SHAPE = Rule(
    "WG-ST-013",
    "invalid safetensors shape",
    Severity.HIGH,
    "A tensor's shape is not a list of non-negative integers.",
    _REEXPORT,
)
ST_BAD_OFFSETS = Rule(
    "WG-ST-014",
    "invalid safetensors data_offsets",
    Severity.HIGH,
    "A tensor's data_offsets is not [begin, end] with non-negative integers and begin <= end.",
    _REEXPORT,
)
ST_SIZE_MISMATCH = Rule(
    "WG-ST-015",
    "tensor size does not match its byte span",
    Severity.HIGH,
    "shape x dtype size differs from end - begin, overflows, or ends inside a byte for sub-byte dtypes.",
    _REEXPORT,
)
ST_GAP = Rule(
    "WG-ST-016",
    "gap between safetensors tensors",
    Severity.HIGH,
    "The tensors, sorted by offset, do not start at 0 or leave unreferenced bytes between them.",
    "Refuse the file: unreferenced bytes are a place to hide a payload.",
)
ST_OVERLAP = Rule(
    "WG-ST-017",
    "overlapping safetensors tensors",
    Severity.HIGH,
    "Two tensors share bytes of the data region.",
    _REEXPORT,
)
ST_OUT_OF_BOUNDS = Rule(
    "WG-ST-018",
    "safetensors tensor past end of file",
    Severity.HIGH,
    "A tensor's data_offsets point past the end of the data region.",
    _REEXPORT,
)
ST_TRAILING_DATA = Rule(
    "WG-ST-019",
    "bytes hidden after the last tensor",
    Severity.HIGH,
    "The data region is longer than the last tensor's end; the extra bytes are not part of any tensor.",
    "Refuse the file: appended bytes (often a pickle) are a known way to smuggle a payload.",
)
ST_DATA_IS_PICKLE = Rule(
    "WG-ST-020",
    "pickle stream in the safetensors data region",
    Severity.HIGH,
    "The data region starts with a complete pickle stream: a loader that unpickles the bytes after the header runs it.",
    "Refuse the file: it is a safetensors/pickle polyglot; the pickle's own findings say what it would do.",
)

# --- GGUF --------------------------------------------------------------------
GGUF_BAD_HEADER = Rule(
    "WG-GGUF-001",
    "GGUF header malformed",
    Severity.HIGH,
    "The magic, version or counts of the GGUF header are missing, unsupported or impossible for the file size.",
    _REEXPORT,
)
GGUF_HEADER_TOO_LARGE = Rule(
    "WG-GGUF-002",
    "GGUF metadata over the limit",
    Severity.HIGH,
    "Metadata and tensor infos exceed max_header_bytes, so the rest of the header was not analysed.",
    "Raise spec.limits.max_header_bytes only for a trusted file.",
    RuleKind.ERROR,
)
GGUF_TRUNCATED = Rule(
    "WG-GGUF-003",
    "GGUF header truncated",
    Severity.HIGH,
    "A string, array or tensor info runs past the end of the file.",
    _REEXPORT,
)
GGUF_BAD_VALUE = Rule(
    "WG-GGUF-004",
    "invalid GGUF metadata value",
    Severity.HIGH,
    "A metadata value has an unknown type, a non-UTF-8 string, an invalid bool or arrays nested too deep.",
    _REEXPORT,
)
GGUF_DUPLICATE = Rule(
    "WG-GGUF-005",
    "duplicate GGUF key or tensor name",
    Severity.HIGH,
    "A metadata key or tensor name appears twice; llama.cpp refuses such files, other readers may not.",
    _REEXPORT,
)
GGUF_BAD_ALIGNMENT = Rule(
    "WG-GGUF-006",
    "invalid GGUF alignment",
    Severity.HIGH,
    "general.alignment is not a non-zero power of two stored as uint32.",
    _REEXPORT,
)
GGUF_BAD_TENSOR = Rule(
    "WG-GGUF-007",
    "invalid GGUF tensor info",
    Severity.HIGH,
    "A tensor has too many dimensions, an unknown ggml type, a size overflow or rows not a whole number of blocks.",
    _REEXPORT,
)
GGUF_MISALIGNED = Rule(
    "WG-GGUF-008",
    "misaligned GGUF tensor",
    Severity.HIGH,
    "A tensor's offset is not a multiple of the file's alignment.",
    _REEXPORT,
)
GGUF_OUT_OF_BOUNDS = Rule(
    "WG-GGUF-009",
    "GGUF tensor past end of file",
    Severity.HIGH,
    "A tensor's data runs past the end of the file.",
    _REEXPORT,
)
GGUF_OVERLAP = Rule(
    "WG-GGUF-010",
    "overlapping GGUF tensors",
    Severity.HIGH,
    "Two tensors share bytes of the data section.",
    _REEXPORT,
)
GGUF_GAP = Rule(
    "WG-GGUF-011",
    "unreferenced bytes in GGUF data",
    Severity.MEDIUM,
    "The data section holds bytes beyond alignment padding that belong to no tensor (between tensors or at the end).",
    "Refuse the file: unreferenced bytes are a place to hide a payload.",
)
GGUF_TEMPLATE_INJECTION = Rule(
    "WG-GGUF-012",
    "chat template reaches Python internals",
    Severity.CRITICAL,
    "A Jinja chat template uses a construct outside the reviewed allowlist, a way out of the sandbox (CVE-2024-34359).",
    _TEMPLATE_FIX,
)

# --- ONNX --------------------------------------------------------------------
ONNX_MALFORMED = Rule(
    "WG-ONNX-001",
    "malformed ONNX protobuf",
    Severity.HIGH,
    "The protobuf wire format is broken (bad varint, wire type or length past the message end).",
    _REEXPORT,
)
ONNX_EXTERNAL_ESCAPE = Rule(
    "WG-ONNX-002",
    "ONNX external data escapes the model directory",
    Severity.CRITICAL,
    "A tensor's external-data location is absolute, contains '..' or a drive/URL prefix.",
    "Refuse the model: loading it reads (or maps) a file outside the model directory.",
)
ONNX_EXTERNAL_MALFORMED = Rule(
    "WG-ONNX-003",
    "malformed ONNX external-data entry",
    Severity.HIGH,
    "A tensor marked EXTERNAL lacks a location, or its location/offset/length entries are invalid or repeated.",
    _REEXPORT,
)
ONNX_CUSTOM_DOMAIN = Rule(
    "WG-ONNX-004",
    "ONNX custom-domain operator",
    Severity.MEDIUM,
    "A node uses an operator domain outside the ONNX standard set; running it needs a custom operator library.",
    "Review the operator library before loading it into a runtime.",
)
ONNX_VENDOR_DOMAIN = Rule(
    "WG-ONNX-005",
    "ONNX Runtime contrib operator",
    Severity.INFO,
    "A node uses the com.microsoft domain (ONNX Runtime contrib operators built into the runtime).",
)
ONNX_TOO_DEEP = Rule(
    "WG-ONNX-006",
    "ONNX graphs nested too deep",
    Severity.HIGH,
    "Subgraphs or messages nest deeper than protobuf's default recursion limit of 100.",
    _REEXPORT,
)

# --- Keras -------------------------------------------------------------------
KERAS_LAMBDA = Rule(
    "WG-KERAS-001",
    "Keras Lambda layer",
    Severity.CRITICAL,
    "The model config holds a Lambda layer, which carries Python code run on load (CVE-2024-3660).",
    "Refuse the model; rebuild it without Lambda layers.",
)
KERAS_SERIALIZED_FUNCTION = Rule(
    "WG-KERAS-002",
    "serialized Python function in Keras config",
    Severity.CRITICAL,
    "The config holds a __lambda__ object or function_type 'lambda' (marshalled bytecode).",
    "Refuse the model; marshalled bytecode runs when the config is deserialized.",
)
KERAS_FOREIGN_MODULE = Rule(
    "WG-KERAS-003",
    "Keras object from a non-Keras module",
    Severity.HIGH,
    "An object's 'module' is outside the reviewed Keras modules, so loading imports other code (CVE-2025-1550).",
    "Refuse the model unless you have reviewed that module.",
)
KERAS_CUSTOM_OBJECT = Rule(
    "WG-KERAS-004",
    "Keras custom object",
    Severity.MEDIUM,
    "An object's registered_name or class is not a reviewed Keras built-in; loading it needs custom code.",
    "Review the custom object's code before loading the model.",
)
KERAS_GADGET = Rule(
    "WG-KERAS-005",
    "Keras object with side effects on load",
    Severity.HIGH,
    "The config names a Keras built-in that loads external files or code (TFSMLayer, get_file, TFOpLambda...).",
    "Refuse the model; these objects have been used to bypass Keras safe_mode (CVE-2025-8747).",
)
KERAS_MALFORMED = Rule(
    "WG-KERAS-006",
    "malformed Keras config",
    Severity.HIGH,
    "The model config is not strict UTF-8 JSON (or nests too deep), so it could not be checked.",
    _REEXPORT,
)
KERAS_DUPLICATE_KEY = Rule(
    "WG-KERAS-007",
    "duplicate key in Keras config",
    Severity.HIGH,
    "A JSON key appears twice in the model config; what the loader sees may differ from what was reviewed.",
    _REEXPORT,
)

# --- HDF5 --------------------------------------------------------------------
H5_NOT_ANALYSED = Rule(
    "WG-H5-001",
    "HDF5 not fully analysed",
    Severity.HIGH,
    "h5py is not installed, so only a bounded byte search of the HDF5 file was done.",
    "pip install 'weightguard[test]' (h5py) to analyse HDF5 files fully.",
    RuleKind.SKIPPED,
)
H5_MALFORMED = Rule(
    "WG-H5-002",
    "unreadable HDF5 structure",
    Severity.HIGH,
    "h5py could not open the file or read its root attributes.",
    _REEXPORT,
)
H5_ATTRIBUTE_TOO_LARGE = Rule(
    "WG-H5-003",
    "HDF5 model config over the limit",
    Severity.HIGH,
    "The model_config or training_config attribute is larger than max_header_bytes, so it was not analysed.",
    "Raise spec.limits.max_header_bytes only for a trusted file.",
    RuleKind.ERROR,
)
H5_BAD_ATTRIBUTE = Rule(
    "WG-H5-004",
    "HDF5 model config not a string",
    Severity.HIGH,
    "The model_config or training_config attribute is not a (byte) string, so it could not be checked.",
    _REEXPORT,
)
H5_EXTERNAL_REFERENCE = Rule(
    "WG-H5-005",
    "HDF5 reference to another file",
    Severity.HIGH,
    "An external link, external dataset storage or virtual dataset makes the loader read another file.",
    "Refuse the file: reading it reads files outside the model.",
)
H5_LAMBDA_MARKER = Rule(
    "WG-H5-006",
    "Lambda layer marker in HDF5 bytes",
    Severity.CRITICAL,
    "A bounded byte search (without h5py) found a Keras Lambda layer or serialized function marker.",
    "Refuse the model; rebuild it without Lambda layers.",
)

# --- JSON configs --------------------------------------------------------------
CFG_MALFORMED = Rule(
    "WG-CFG-001",
    "malformed JSON",
    Severity.LOW,
    "The file was detected as JSON but is not strict UTF-8 JSON (or nests too deep to parse).",
)
CFG_DUPLICATE_KEY = Rule(
    "WG-CFG-002",
    "duplicate key in JSON config",
    Severity.MEDIUM,
    "A JSON key appears twice; Python keeps the last value, other readers may keep the first.",
    "Fix the file; two readers would see different settings.",
)
CFG_AUTO_MAP = Rule(
    "WG-CFG-003",
    "config requires custom modeling code",
    Severity.MEDIUM,
    "The config has an auto_map (or custom_pipelines): loading it needs trust_remote_code and runs repository code.",
    "Review the referenced Python files, or load without trust_remote_code.",
)
CFG_REMOTE_CODE_REPO = Rule(
    "WG-CFG-004",
    "config pulls code from another repository",
    Severity.HIGH,
    "An auto_map entry names code in another Hugging Face repository ('org/repo--module.Class').",
    "Refuse the model: the code it runs is not even part of the reviewed files.",
)
CFG_TOO_LARGE = Rule(
    "WG-CFG-005",
    "JSON config over the limit",
    Severity.HIGH,
    "The JSON file is larger than max_header_bytes, so it was not analysed.",
    "Raise spec.limits.max_header_bytes only for a trusted file.",
    RuleKind.ERROR,
)
CFG_TEMPLATE_INJECTION = Rule(
    "WG-CFG-006",
    "chat template reaches Python internals",
    Severity.CRITICAL,
    "A chat_template (JSON config or .jinja file) uses a Jinja construct outside the reviewed allowlist.",
    _TEMPLATE_FIX,
)
CFG_TEMPLATE_UNPARSABLE = Rule(
    "WG-CFG-007",
    "chat template does not parse",
    Severity.HIGH,
    "A chat template (GGUF metadata, JSON config, .jinja file) is not valid Jinja or not a string: not judged.",
    "Refuse the model, or replace its chat template with the published one.",
)

RULES = (
    ST_TRUNCATED,
    ST_HEADER_TOO_LARGE,
    ST_HEADER_PAST_EOF,
    ST_HEADER_NOT_UTF8,
    ST_HEADER_NOT_JSON,
    ST_HEADER_LAYOUT,
    ST_DUPLICATE_KEY,
    ST_NOT_AN_OBJECT,
    ST_BAD_METADATA,
    ST_BAD_ENTRY,
    ST_UNKNOWN_FIELD,
    ST_BAD_DTYPE,
    ST_BAD_SHAPE,
    ST_BAD_OFFSETS,
    ST_SIZE_MISMATCH,
    ST_GAP,
    ST_OVERLAP,
    ST_OUT_OF_BOUNDS,
    ST_TRAILING_DATA,
    ST_DATA_IS_PICKLE,
    GGUF_BAD_HEADER,
    GGUF_HEADER_TOO_LARGE,
    GGUF_TRUNCATED,
    GGUF_BAD_VALUE,
    GGUF_DUPLICATE,
    GGUF_BAD_ALIGNMENT,
    GGUF_BAD_TENSOR,
    GGUF_MISALIGNED,
    GGUF_OUT_OF_BOUNDS,
    GGUF_OVERLAP,
    GGUF_GAP,
    GGUF_TEMPLATE_INJECTION,
    ONNX_MALFORMED,
    ONNX_EXTERNAL_ESCAPE,
    ONNX_EXTERNAL_MALFORMED,
    ONNX_CUSTOM_DOMAIN,
    ONNX_VENDOR_DOMAIN,
    ONNX_TOO_DEEP,
    KERAS_LAMBDA,
    KERAS_SERIALIZED_FUNCTION,
    KERAS_FOREIGN_MODULE,
    KERAS_CUSTOM_OBJECT,
    KERAS_GADGET,
    KERAS_MALFORMED,
    KERAS_DUPLICATE_KEY,
    H5_NOT_ANALYSED,
    H5_MALFORMED,
    H5_ATTRIBUTE_TOO_LARGE,
    H5_BAD_ATTRIBUTE,
    H5_EXTERNAL_REFERENCE,
    H5_LAMBDA_MARKER,
    CFG_MALFORMED,
    CFG_DUPLICATE_KEY,
    CFG_AUTO_MAP,
    CFG_REMOTE_CODE_REPO,
    CFG_TOO_LARGE,
    CFG_TEMPLATE_INJECTION,
    CFG_TEMPLATE_UNPARSABLE,
)
