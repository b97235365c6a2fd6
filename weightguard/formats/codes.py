"""Rules emitted by format detection and the container analyzers.

Prefixes: ``WG-FMT`` (what detection concluded), ``WG-ZIP`` (zip structure and
the tricks where PyTorch's miniz reader and Python's ``zipfile`` disagree),
``WG-ARC`` (tar, single-stream compressors, 7z), ``WG-TRC`` (PyTorch zip,
TorchScript and legacy layouts) and ``WG-NPY`` (``.npy`` headers). What a
pickle inside any of them does is reported by the pickle stage's own rules.
"""

from weightguard.findings import Rule, RuleKind, Severity

# --- detection ---------------------------------------------------------------
POLYGLOT = Rule(
    "WG-FMT-001",
    "polyglot file",
    Severity.HIGH,
    "The bytes are valid as two or more unrelated formats; different loaders would see different content.",
    "Re-export the model with one serializer; never load a file that parses as two formats.",
)
UNKNOWN_FORMAT = Rule(
    "WG-FMT-002",
    "unknown binary format",
    Severity.HIGH,
    "The content matches no format weightguard recognises, so it was not analysed.",
    "Remove the file or convert it to a supported format such as safetensors.",
    RuleKind.SKIPPED,
)

# --- zip ---------------------------------------------------------------------
ZIP_MALFORMED = Rule(
    "WG-ZIP-001",
    "malformed zip structure",
    Severity.HIGH,
    "The zip end record or central directory is missing, truncated or points outside the file.",
    "Re-create the archive with a standard tool; loaders disagree on broken zips.",
)
ZIP_DUPLICATE_NAME = Rule(
    "WG-ZIP-002",
    "duplicate zip member name",
    Severity.CRITICAL,
    "Two members share a name (or one cut at a NUL): zipfile reads the last, torch's miniz either.",
    "Refuse the file; no legitimate serializer writes one name twice.",
)
ZIP_NAME_MISMATCH = Rule(
    "WG-ZIP-003",
    "local and central member names differ",
    Severity.CRITICAL,
    "A member's local header names a different file than the central directory (a parser differential).",
    "Refuse the file; it was crafted to show different content to different readers.",
)
ZIP_CRC_MISMATCH = Rule(
    "WG-ZIP-004",
    "zip member CRC mismatch",
    Severity.HIGH,
    "A member's bytes do not match its CRC-32; Python's zipfile refuses it while PyTorch may load it.",
    "Refuse the file; a CRC mismatch is a known scanner bypass (CVE-2025-1944 family).",
)
ZIP_FLAGS = Rule(
    "WG-ZIP-005",
    "encrypted or unusual zip flags",
    Severity.HIGH,
    "A member is encrypted or uses general-purpose flag bits that readers interpret differently.",
    "Re-create the archive without encryption or patched flag bits.",
)
ZIP_UNSAFE_NAME = Rule(
    "WG-ZIP-006",
    "unsafe zip member name",
    Severity.HIGH,
    "A member name is absolute, contains '..', a backslash, a NUL, or non-ASCII bytes without the UTF-8 flag.",
    "Refuse the file; such names enable path traversal or name-decoding differentials.",
)
ZIP_PREPENDED_DATA = Rule(
    "WG-ZIP-007",
    "data before the first zip member",
    Severity.HIGH,
    "Bytes precede the first local header, so the file can be read as another format too (polyglot).",
    "Refuse the file; a model archive starts with its first member.",
)
ZIP_OVERLAP = Rule(
    "WG-ZIP-008",
    "overlapping zip members",
    Severity.HIGH,
    "Two members share bytes, or a member runs into the central directory.",
    "Refuse the file; overlapping members are a zip-bomb and differential technique.",
)
ZIP_HEADER_MISMATCH = Rule(
    "WG-ZIP-009",
    "local header disagrees with central directory",
    Severity.MEDIUM,
    "A member's local header gives a different method, size or CRC than its central directory entry.",
    "Re-create the archive; readers that trust the local header see different content.",
)
ZIP64_INCONSISTENT = Rule(
    "WG-ZIP-010",
    "inconsistent zip64 records",
    Severity.HIGH,
    "Zip64 sizes, offsets or counts are missing or contradict the 32-bit records.",
    "Re-create the archive with a standard tool.",
)
ZIP_UNSUPPORTED_METHOD = Rule(
    "WG-ZIP-011",
    "zip member not analysed",
    Severity.HIGH,
    "A member uses a compression method other than stored or deflate, so it was not analysed.",
    "Re-create the archive with stored or deflated members.",
    RuleKind.SKIPPED,
)
ZIP_CORRUPT_MEMBER = Rule(
    "WG-ZIP-012",
    "corrupt zip member",
    Severity.HIGH,
    "A member's compressed data is invalid or does not match its declared size.",
    "Refuse the file; readers disagree on how much of a corrupt member they load.",
)
ZIP_TRAILING_DATA = Rule(
    "WG-ZIP-013",
    "data after the zip end record",
    Severity.MEDIUM,
    "Bytes follow the end-of-central-directory record and its comment.",
    "Re-create the archive; trailing bytes can hide a second payload.",
)
ZIP_CASE_DUPLICATE = Rule(
    "WG-ZIP-014",
    "zip member names differ only in ASCII case",
    Severity.CRITICAL,
    "torch's zip reader (miniz) matches names ignoring ASCII case, so it may read either member (issue 15).",
    "Refuse the file; no serializer writes names that differ only in case.",
)

# --- tar, single-stream compressors, 7z ---------------------------------------
ARC_LINK = Rule(
    "WG-ARC-001",
    "link in tar archive",
    Severity.HIGH,
    "A tar member is a hard or symbolic link, which can redirect extraction outside the archive.",
    "Re-create the archive with regular files only.",
)
ARC_SPECIAL = Rule(
    "WG-ARC-002",
    "special member in tar archive",
    Severity.HIGH,
    "A tar member is a device, FIFO or other special file.",
    "Re-create the archive with regular files only.",
)
ARC_UNSAFE_NAME = Rule(
    "WG-ARC-003",
    "unsafe archive member name",
    Severity.HIGH,
    "An archive member name is absolute, contains '..', a backslash or a NUL (path traversal).",
    "Refuse the file; never extract it.",
)
ARC_MALFORMED = Rule(
    "WG-ARC-004",
    "malformed archive",
    Severity.HIGH,
    "The tar or 7z structure could not be read to the end.",
    "Re-create the archive with a standard tool.",
)
ARC_CORRUPT_STREAM = Rule(
    "WG-ARC-005",
    "corrupt compressed stream",
    Severity.HIGH,
    "A gzip, bzip2, xz or zlib stream is invalid or truncated, so its content was not fully analysed.",
    "Re-create the file; a truncated stream may hide what a lenient reader would load.",
)
ARC_TRAILING_DATA = Rule(
    "WG-ARC-006",
    "data after the compressed stream",
    Severity.MEDIUM,
    "Bytes follow the end of the compressed stream and are not part of its content.",
    "Re-create the file; trailing bytes can hide a second payload.",
)
ARC_SEVEN_ZIP_SKIPPED = Rule(
    "WG-ARC-007",
    "7z archive not analysed",
    Severity.HIGH,
    "The 7z archive could not be listed or extracted (py7zr missing, encrypted or unsupported), so it was skipped.",
    "Install weightguard[test] (py7zr) or repackage the model as safetensors.",
    RuleKind.SKIPPED,
)
ARC_DUPLICATE_NAME = Rule(
    "WG-ARC-008",
    "duplicate tar member name",
    Severity.CRITICAL,
    "Two tar members have the same normalised name: tarfile (and torch's legacy loader) reads the last.",
    "Refuse the file; every copy was analysed, but which one a loader reads depends on the reader.",
)

# --- PyTorch -------------------------------------------------------------------
TRC_LAYOUT = Rule(
    "WG-TRC-001",
    "unexpected PyTorch archive layout",
    Severity.HIGH,
    "The archive does not have the single root folder with data.pkl that torch.load expects.",
    "Refuse the file; torch and scanners may read different pickles from it.",
)
TRC_LAYOUT_INCOMPLETE = Rule(
    "WG-TRC-002",
    "PyTorch archive record missing",
    Severity.LOW,
    "A record torch.save always writes (version, byteorder) is missing.",
    "Re-save the checkpoint with a current torch.",
)
TRC_STRAY_PICKLE = Rule(
    "WG-TRC-003",
    "pickle outside the expected place",
    Severity.HIGH,
    "A pickle member sits where torch.load would not read it, or the archive has two roots.",
    "Refuse the file; a second pickle is a way to show a scanner different content.",
)
TRC_MISSING_STORAGE = Rule(
    "WG-TRC-004",
    "tensor storage missing",
    Severity.HIGH,
    "A persistent id in data.pkl names a storage record that the archive does not contain.",
    "Refuse the file; it cannot load as declared.",
)
TRC_STORAGE_SIZE = Rule(
    "WG-TRC-005",
    "tensor storage size mismatch",
    Severity.HIGH,
    "A storage record's size does not equal numel x element size declared in the pickle.",
    "Refuse the file; tensor bytes are not what the pickle declares.",
)
TRC_UNREFERENCED_STORAGE = Rule(
    "WG-TRC-006",
    "unreferenced tensor storage",
    Severity.MEDIUM,
    "A data/ record is not referenced by any pickle, so its bytes are hidden from the loader.",
    "Re-save the checkpoint; unreferenced records can carry a hidden payload.",
)
TRC_TORCHSCRIPT_CODE = Rule(
    "WG-TRC-007",
    "TorchScript code",
    Severity.HIGH,
    "The archive carries TorchScript source, which is compiled and run when the model is loaded.",
    "Load only TorchScript from a trusted, signed source, or convert the weights to safetensors.",
)
TRC_BAD_PERSISTENT_ID = Rule(
    "WG-TRC-008",
    "malformed persistent id",
    Severity.HIGH,
    "A persistent id is not a ('storage', type, key, location, numel) record torch understands.",
    "Refuse the file.",
)
TRC_LEGACY_STRUCTURE = Rule(
    "WG-TRC-009",
    "malformed legacy PyTorch file",
    Severity.HIGH,
    "The stacked pickles of a legacy torch.save file (magic, protocol, sys_info, object, keys) are not as expected.",
    "Re-save the checkpoint with a current torch or convert it to safetensors.",
)
TRC_LEGACY_STORAGE = Rule(
    "WG-TRC-010",
    "legacy storage bytes inconsistent",
    Severity.HIGH,
    "The raw storages after a legacy file's pickles do not match the declared sizes or the file length.",
    "Refuse the file; extra bytes are not tensor data.",
)
TRC_TRAILING_PICKLE_DATA = Rule(
    "WG-TRC-011",
    "data after pickle in archive member",
    Severity.HIGH,
    "A pickle member continues after its STOP opcode; torch ignores those bytes but other readers may not.",
    "Refuse the file.",
)

# --- numpy -------------------------------------------------------------------------
NPY_MALFORMED = Rule(
    "WG-NPY-001",
    "malformed .npy header",
    Severity.HIGH,
    "The .npy magic, version, header length or header dictionary is invalid.",
    "Re-save the array with numpy.save.",
)
NPY_SIZE_MISMATCH = Rule(
    "WG-NPY-002",
    ".npy data size mismatch",
    Severity.HIGH,
    "The bytes after the header do not equal shape x itemsize; extra bytes can hide a payload.",
    "Re-save the array with numpy.save.",
)
NPY_OBJECT_ARRAY = Rule(
    "WG-NPY-003",
    "object array",
    Severity.MEDIUM,
    "The array has dtype object, so numpy.load unpickles its data once pickles are allowed.",
    "Store numeric arrays only; object arrays are pickles.",
)

RULES = (
    POLYGLOT,
    UNKNOWN_FORMAT,
    ZIP_MALFORMED,
    ZIP_DUPLICATE_NAME,
    ZIP_NAME_MISMATCH,
    ZIP_CRC_MISMATCH,
    ZIP_FLAGS,
    ZIP_UNSAFE_NAME,
    ZIP_PREPENDED_DATA,
    ZIP_OVERLAP,
    ZIP_HEADER_MISMATCH,
    ZIP64_INCONSISTENT,
    ZIP_UNSUPPORTED_METHOD,
    ZIP_CORRUPT_MEMBER,
    ZIP_TRAILING_DATA,
    ZIP_CASE_DUPLICATE,
    ARC_LINK,
    ARC_SPECIAL,
    ARC_UNSAFE_NAME,
    ARC_MALFORMED,
    ARC_CORRUPT_STREAM,
    ARC_TRAILING_DATA,
    ARC_SEVEN_ZIP_SKIPPED,
    ARC_DUPLICATE_NAME,
    TRC_LAYOUT,
    TRC_LAYOUT_INCOMPLETE,
    TRC_STRAY_PICKLE,
    TRC_MISSING_STORAGE,
    TRC_STORAGE_SIZE,
    TRC_UNREFERENCED_STORAGE,
    TRC_TORCHSCRIPT_CODE,
    TRC_BAD_PERSISTENT_ID,
    TRC_LEGACY_STRUCTURE,
    TRC_LEGACY_STORAGE,
    TRC_TRAILING_PICKLE_DATA,
    NPY_MALFORMED,
    NPY_SIZE_MISMATCH,
    NPY_OBJECT_ARRAY,
)
