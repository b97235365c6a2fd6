"""Rules the scanner itself emits (limits, unreadable content, internal failures)."""

from weightguard.findings import Rule, RuleKind, Severity

LIMIT_EXCEEDED = Rule(
    "WG-LIM-001",
    "resource limit exceeded",
    Severity.HIGH,
    "Analysis stopped at a configured limit, so the file was not fully analysed.",
    "Raise the limit in spec.limits only if the file is trusted to be that large.",
    RuleKind.ERROR,
)
FILE_TOO_LARGE = Rule(
    "WG-LIM-002",
    "file too large",
    Severity.HIGH,
    "The file is larger than spec.limits.max_file_bytes and was not analysed.",
    "Raise spec.limits.max_file_bytes if files this large are expected.",
    RuleKind.ERROR,
)
ANALYSIS_FAILED = Rule(
    "WG-ERR-001",
    "analysis failed",
    Severity.HIGH,
    "An analyzer could not complete on this file; it is not approved.",
    "Report the file to the weightguard maintainers; treat it as untrusted.",
    RuleKind.ERROR,
)
NO_ANALYZER = Rule(
    "WG-ERR-002",
    "format not analysed",
    Severity.HIGH,
    "weightguard recognised the format but has no analyzer for it here.",
    "Install the extra that analyses this format, or refuse the format in the policy.",
    RuleKind.SKIPPED,
)

ANALYZER_CRASHED = Rule(
    "WG-ERR-003",
    "analyzer crashed",
    Severity.HIGH,
    "An analyzer stopped on an unexpected exception (a weightguard bug or resource exhaustion); "
    "the file is not approved and the run went on with the other files.",
    "Report the file and the exception named in the message to the weightguard maintainers; treat the file as untrusted.",
    RuleKind.ERROR,
)

RULES = (LIMIT_EXCEEDED, FILE_TOO_LARGE, ANALYSIS_FAILED, NO_ANALYZER, ANALYZER_CRASHED)
