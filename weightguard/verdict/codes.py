"""Rules emitted by the verdict stage: attestations and rollout."""

from weightguard.findings import Rule, Severity

ATTESTATION_MALFORMED = Rule(
    "WG-ATT-001",
    "malformed attestation",
    Severity.HIGH,
    "The approval attestation is not a weightguard verification summary in an in-toto statement.",
    "Re-create it with `weightguard verify --attest`.",
)
ATTESTATION_WRONG_SIGNER = Rule(
    "WG-ATT-002",
    "attestation signed by another key",
    Severity.HIGH,
    "The attestation's signer is not the trusted key given.",
    "Check which key the approving pipeline uses.",
)
ATTESTATION_SUBJECT_MISMATCH = Rule(
    "WG-ATT-003",
    "attested digest differs from the model",
    Severity.CRITICAL,
    "The model's bytes changed after it was attested, or the attestation is for another model.",
    "Verify the model again; never promote bytes that were not verified.",
)
ATTESTATION_POLICY_MISMATCH = Rule(
    "WG-ATT-004",
    "attested under another policy",
    Severity.HIGH,
    "The attestation records a policy digest other than the expected one.",
    "Verify the model again under the current policy.",
)
ATTESTATION_NOT_FOUND = Rule(
    "WG-ATT-005",
    "no attestation attached",
    Severity.HIGH,
    "No approval attestation signed by a trusted key is attached to the artifact in the registry.",
    "Run `weightguard verify oci://… --attest KEY --attach` on this exact digest.",
)

RULES = (
    ATTESTATION_MALFORMED,
    ATTESTATION_WRONG_SIGNER,
    ATTESTATION_SUBJECT_MISMATCH,
    ATTESTATION_POLICY_MISMATCH,
    ATTESTATION_NOT_FOUND,
)
