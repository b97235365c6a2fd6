"""Rules emitted while verifying model signatures (OMS bundles, keys, certificates, Sigstore).

A finding of severity INFO is a note (what the signer excluded, which extras
were tolerated, who signed); any other finding means the signature does not
hold. Not handled here: deciding whether a signature was required at all
(that is the policy's ``spec.signatures.required``).
"""

from weightguard.findings import Rule, Severity

MALFORMED_BUNDLE = Rule(
    "WG-SIG-001",
    "malformed signature bundle",
    Severity.HIGH,
    "The signature file is not a readable Sigstore bundle (bad JSON, bad base64, missing fields).",
    "Re-create the signature with weightguard sign or model_signing sign.",
)
UNSUPPORTED_BUNDLE = Rule(
    "WG-SIG-002",
    "unsupported bundle",
    Severity.HIGH,
    "The bundle's media type or verification material is not one weightguard can check.",
    "Use a Sigstore bundle v0.3 with a DSSE envelope and a public key, certificate chain or Sigstore certificate.",
)
NO_SIGNATURE = Rule(
    "WG-SIG-003",
    "envelope has no signature",
    Severity.HIGH,
    "The DSSE envelope carries no signature, so nothing vouches for the manifest.",
    "Re-sign the model.",
)
BAD_SIGNATURE = Rule(
    "WG-SIG-004",
    "signature does not verify",
    Severity.CRITICAL,
    "The cryptographic signature over the DSSE envelope is invalid: the payload or signature was altered.",
    "Do not use the model; obtain a correctly signed copy.",
)
UNTRUSTED_SIGNER = Rule(
    "WG-SIG-005",
    "signer not trusted",
    Severity.HIGH,
    "The signature was made by a key, certificate or identity that the given trust material does not accept.",
    "Check that the expected public key, root CA or Sigstore identity/issuer is configured.",
)
WRONG_PAYLOAD_TYPE = Rule(
    "WG-SIG-006",
    "wrong payload type",
    Severity.HIGH,
    "The DSSE payloadType is not application/vnd.in-toto+json.",
    "Only in-toto statements are model signatures; this envelope signs something else.",
)
BAD_STATEMENT = Rule(
    "WG-SIG-007",
    "unsupported or malformed statement",
    Severity.HIGH,
    "The signed in-toto statement is not an OMS v1.0 model signature weightguard can check.",
    "Re-sign with a current model signing tool (predicateType https://model_signing/signature/v1.0).",
)
LEGACY_REFUSED = Rule(
    "WG-SIG-008",
    "legacy predicate refused",
    Severity.HIGH,
    "The signature uses the old predicate https://model_signing/Digests/v0.1, which the policy does not allow.",
    "Re-sign with OMS v1.0, or set spec.signatures.allow_legacy_v01 (CLI: --allow-legacy).",
)
ROOT_MISMATCH = Rule(
    "WG-SIG-009",
    "manifest root digest mismatch",
    Severity.CRITICAL,
    "The statement's subject digest is not the sha256 over its resource digests: the manifest is inconsistent.",
    "Do not use the model; the signature was crafted or corrupted.",
)
UNSAFE_NAME = Rule(
    "WG-SIG-010",
    "unsafe resource name",
    Severity.CRITICAL,
    "A signed resource name is absolute, contains '..' or NUL, is malformed, or resolves outside the model root.",
    "Do not use the model; nothing outside the model root is ever read, in any mode.",
)
DUPLICATE_NAME = Rule(
    "WG-SIG-011",
    "duplicate or colliding resource name",
    Severity.HIGH,
    "Two signed resources share a name, or differ only by letter case (they collide on case-insensitive disks).",
    "Re-sign the model from a directory without colliding names.",
)
DIGEST_MISMATCH = Rule(
    "WG-SIG-012",
    "file differs from the signed digest",
    Severity.CRITICAL,
    "A file's content does not match the digest recorded in the signature.",
    "The file was modified after signing; do not use the model.",
)
MISSING_FILE = Rule(
    "WG-SIG-013",
    "signed file missing",
    Severity.HIGH,
    "A file listed in the signature is not present in the model.",
    "Restore the complete model as it was signed.",
)
UNSIGNED_FILE = Rule(
    "WG-SIG-014",
    "unsigned file",
    Severity.HIGH,
    "The model contains a file that the signature does not cover.",
    "Remove the file, re-sign, or tolerate it via spec.signatures.allow_unsigned_files.",
)
UNSIGNED_TOLERATED = Rule(
    "WG-SIG-015",
    "unsigned file tolerated",
    Severity.INFO,
    "A file not covered by the signature was tolerated by the policy or by --ignore-unsigned-files.",
    "Review that tolerating it is intended.",
)
SIGNER_IGNORES = Rule(
    "WG-SIG-016",
    "signer excluded paths",
    Severity.INFO,
    "The signer recorded paths that are not covered by the signature and may change freely.",
    "Refuse them with spec.signatures.allow_signer_ignore_paths: false if those files matter.",
)
SIGNER_IGNORES_REFUSED = Rule(
    "WG-SIG-017",
    "signer exclusions not honoured",
    Severity.INFO,
    "The policy refuses signer-recorded ignore paths: files under them are treated as unsigned.",
    "Nothing to do unless such files are present (they are then reported as unsigned).",
)
SIGNED_BY = Rule(
    "WG-SIG-018",
    "signature holds",
    Severity.INFO,
    "The signature verified and every signed file matched.",
    "",
)
SIGNATURE_REQUIRED = Rule(
    "WG-SIG-019",
    "required signature missing",
    Severity.HIGH,
    "The policy requires valid signatures from trusted signers and not enough were found.",
    "Provide a signature from one of the trusted signers listed in spec.signatures.trusted_signers.",
)

RULES = (
    MALFORMED_BUNDLE,
    UNSUPPORTED_BUNDLE,
    NO_SIGNATURE,
    BAD_SIGNATURE,
    UNTRUSTED_SIGNER,
    WRONG_PAYLOAD_TYPE,
    BAD_STATEMENT,
    LEGACY_REFUSED,
    ROOT_MISMATCH,
    UNSAFE_NAME,
    DUPLICATE_NAME,
    DIGEST_MISMATCH,
    MISSING_FILE,
    UNSIGNED_FILE,
    UNSIGNED_TOLERATED,
    SIGNER_IGNORES,
    SIGNER_IGNORES_REFUSED,
    SIGNED_BY,
    SIGNATURE_REQUIRED,
)
