"""Rules emitted by evaluating the policy itself."""

from weightguard.findings import Rule, Severity

FORMAT_REFUSED = Rule(
    "WG-POL-001",
    "format refused by policy",
    Severity.HIGH,
    "The file's real format is listed in spec.formats.refused.",
    "Convert the model to an allowed format (for example safetensors) or change the policy.",
)
FORMAT_NOT_ALLOWED = Rule(
    "WG-POL-002",
    "format not in the policy's allowlist",
    Severity.HIGH,
    "spec.formats.allowed is set and does not list the file's real format.",
    "Add the format to spec.formats.allowed if it is expected, or remove the file.",
)
IGNORE_EXPIRED = Rule(
    "WG-POL-003",
    "expired ignore",
    Severity.MEDIUM,
    "An ignore entry in spec.severity.ignores is past its expiry date and no longer applies.",
    "Fix the underlying finding, or renew the ignore with a new date and reason.",
)
EXEMPTION_EXPIRED = Rule(
    "WG-POL-004",
    "expired format exemption",
    Severity.MEDIUM,
    "An entry in spec.formats.exempt is past its expiry date; the files it named are judged as usual again.",
    "Convert or remove the files, or renew the exemption with a new date and reason.",
)

RULES = (FORMAT_REFUSED, FORMAT_NOT_ALLOWED, IGNORE_EXPIRED, EXEMPTION_EXPIRED)
