"""Rules emitted while collecting the files of a target."""

from weightguard.findings import Rule, RuleKind, Severity

SYMLINK_REFUSED = Rule(
    "WG-SRC-001",
    "symlink refused",
    Severity.HIGH,
    "The model contains a symbolic link; links can redirect reads outside the model.",
    "Replace the link by the file it points to, or allow in-root links in the policy.",
)
SYMLINK_ESCAPES = Rule(
    "WG-SRC-002",
    "symlink escapes the model root",
    Severity.CRITICAL,
    "A symbolic link resolves to a path outside the model directory.",
    "Remove the link; nothing outside the model root is ever read.",
)
SPECIAL_FILE = Rule(
    "WG-SRC-003",
    "special file",
    Severity.HIGH,
    "The model contains a FIFO, socket or device node, which is never read.",
    "Remove it from the model directory.",
    RuleKind.SKIPPED,
)
UNREADABLE = Rule(
    "WG-SRC-004",
    "unreadable file",
    Severity.HIGH,
    "A file could not be opened or read, so it was not analysed.",
    "Check permissions and that the file still exists.",
    RuleKind.ERROR,
)

CHANGED_WHILE_VERIFIED = Rule(
    "WG-SRC-005",
    "changed while verified",
    Severity.CRITICAL,
    "A file (or a folder on its path) was rewritten, truncated, replaced or swapped for a link during "
    "the run, so the bytes hashed are not provably the bytes analysed.",
    "Verify a copy nothing else writes to; never approve bytes that moved under the verifier.",
)

RULES = (SYMLINK_REFUSED, SYMLINK_ESCAPES, SPECIAL_FILE, UNREADABLE, CHANGED_WHILE_VERIFIED)
