"""Rules emitted by the integrity stage (pins, manifests, paths, Hugging Face checks)."""

from weightguard.findings import Rule, RuleKind, Severity

DIGEST_MISMATCH = Rule(
    "WG-INT-001",
    "digest mismatch",
    Severity.CRITICAL,
    "A file's digest differs from the digest pinned in the policy.",
    "Do not deploy: the bytes are not the ones that were locked. Re-lock only after reviewing the change.",
)
MISSING_FILE = Rule(
    "WG-INT-002",
    "pinned file missing",
    Severity.HIGH,
    "A file pinned in spec.integrity.pinned is not present in the model.",
    "Restore the file, or list it in spec.integrity.allow_missing if its absence is expected.",
)
EXTRA_FILE = Rule(
    "WG-INT-003",
    "unpinned extra file",
    Severity.HIGH,
    "The model contains a file that is not pinned and not in spec.integrity.allow_extra.",
    "Remove the file, pin it (weightguard lock), or allow it with a glob in spec.integrity.allow_extra.",
)
UNSAFE_PATH = Rule(
    "WG-INT-004",
    "unsafe path",
    Severity.CRITICAL,
    "A file name is absolute, climbs out with '..', or contains NUL, a backslash or empty components.",
    "Reject the model: such a name can make a tool read or write outside the model directory.",
)
DUPLICATE_PATH = Rule(
    "WG-INT-005",
    "duplicate path",
    Severity.HIGH,
    "The same file name is listed twice, so one of the two contents is silently ignored.",
    "Reject the listing; a well-formed model names each file once.",
)
PATH_COLLISION = Rule(
    "WG-INT-006",
    "case or Unicode collision",
    Severity.MEDIUM,
    "Two names differ only by letter case or Unicode normalization and collide on macOS or Windows.",
    "Rename one of the files; a checkout on a case-insensitive file system keeps only one.",
)
TOLERATED = Rule(
    "WG-INT-007",
    "difference tolerated by policy",
    Severity.INFO,
    "An extra or missing file was accepted because it matches spec.integrity.allow_extra or allow_missing.",
    "Nothing to do if the tolerance is intended; tighten the globs otherwise.",
)
REVISION_NOT_PINNED = Rule(
    "WG-INT-008",
    "revision not pinned",
    Severity.LOW,
    "An hf:// target names a branch or tag, which can move, instead of a 40-hex commit.",
    "Use hf://org/name@<commit>; set spec.integrity.require_pinned_revision to enforce it.",
)
REVISION_REFUSED = Rule(
    "WG-INT-009",
    "unpinned revision refused",
    Severity.HIGH,
    "The policy requires a 40-hex commit and the hf:// target names a branch or tag; nothing was read.",
    "Pin the commit: hf://org/name@<40-hex commit>.",
    RuleKind.ERROR,
)
HUB_HASH_MISMATCH = Rule(
    "WG-INT-010",
    "Hub hash mismatch",
    Severity.CRITICAL,
    "A cached file's content does not match the Hub's own hash for it (LFS sha256 or git blob sha1).",
    "Do not use the cache: delete the repo's cache folder and download again, then investigate who changed it.",
)
HUB_FILE_MISSING = Rule(
    "WG-INT-011",
    "file listed by the Hub missing",
    Severity.HIGH,
    "The Hub's file listing names a file that the local snapshot does not have.",
    "Download the complete snapshot (snapshot_download without patterns) and verify again.",
)
HUB_FILE_UNLISTED = Rule(
    "WG-INT-012",
    "file not listed by the Hub",
    Severity.HIGH,
    "The local snapshot contains a file that the Hub's listing for this commit does not name.",
    "Something added it after download: delete the snapshot and download it again.",
)
HUB_LISTING_UNAVAILABLE = Rule(
    "WG-INT-013",
    "Hub listing unavailable",
    Severity.HIGH,
    "No usable Hub file listing was found for the commit, so the files could not be checked against the Hub.",
    "Run once online (the listing is cached), pass a saved listing with --hub-listing, "
    "or set spec.integrity.hf.allow_missing_listing.",
    RuleKind.ERROR,
)
HUB_UNVERIFIED = Rule(
    "WG-INT-014",
    "Hub hashes not checked",
    Severity.INFO,
    "No Hub listing was available and the policy allows that: the files were not checked against the Hub.",
    "Pin digests in spec.integrity.pinned so the files are still checked.",
)
SNAPSHOT_LINK_ESCAPES = Rule(
    "WG-INT-015",
    "snapshot link escapes the repo cache",
    Severity.CRITICAL,
    "A snapshot entry is a symbolic link that does not resolve to a file inside the repo's cache folder.",
    "Delete the repo's cache folder and download again; never follow such links.",
)

RULES = (
    DIGEST_MISMATCH,
    MISSING_FILE,
    EXTRA_FILE,
    UNSAFE_PATH,
    DUPLICATE_PATH,
    PATH_COLLISION,
    TOLERATED,
    REVISION_NOT_PINNED,
    REVISION_REFUSED,
    HUB_HASH_MISMATCH,
    HUB_FILE_MISSING,
    HUB_FILE_UNLISTED,
    HUB_LISTING_UNAVAILABLE,
    HUB_UNVERIFIED,
    SNAPSHOT_LINK_ESCAPES,
)
