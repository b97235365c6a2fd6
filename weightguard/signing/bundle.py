"""Parse Sigstore bundles (v0.3 JSON), DSSE envelopes and OMS in-toto statements.

The bundle is protobuf JSON written by other tools, so this is a boundary:
pydantic models read it, unknown keys are ignored (protobuf readers must
ignore them; OMS v1.0 says verifiers ignore unknown predicate fields), key
order is free, integers may arrive as floats (``8192.0``) and proto3 omits
fields holding their default (``allow_symlinks: false``, empty lists). Every
problem becomes a :class:`SignatureRejected` naming its rule, never a
traceback. Not handled here: checking signatures (``keys``,
``certificates``, ``sigstore_keyless``) or comparing the manifest with files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from weightguard.signing import codes
from weightguard.signing.interface import SerializationMethod, SignatureRejected, SignedManifest, SignedResource

BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
OMS_V1_PREDICATE = "https://model_signing/signature/v1.0"
LEGACY_V01_PREDICATE = "https://model_signing/Digests/v0.1"
HASH_TYPES = frozenset({"sha256", "blake2b", "blake3"})
MAX_BUNDLE_BYTES = 64 * 2**20  # a bundle with a million resources is still ~150 MB less than this would allow


class _Proto(BaseModel):
    """Protobuf-JSON reader: unknown keys ignored, camelCase aliases, immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class _Hint(_Proto):
    hint: str = ""


class _RawCert(_Proto):
    raw_bytes: str = Field(alias="rawBytes")


class _CertChain(_Proto):
    certificates: list[_RawCert] = Field(default_factory=list)


class _Material(_Proto):
    public_key: _Hint | None = Field(default=None, alias="publicKey")
    x509_certificate_chain: _CertChain | None = Field(default=None, alias="x509CertificateChain")
    certificate: _RawCert | None = None
    tlog_entries: list[dict[str, object]] = Field(default_factory=list, alias="tlogEntries")


class _Sig(_Proto):
    sig: str = ""
    keyid: str = ""


class _Envelope(_Proto):
    payload: str
    payload_type: str = Field(alias="payloadType")
    signatures: list[_Sig] = Field(default_factory=list)


class _Bundle(_Proto):
    media_type: str = Field(alias="mediaType")
    verification_material: _Material = Field(alias="verificationMaterial")
    dsse_envelope: _Envelope | None = Field(default=None, alias="dsseEnvelope")


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    """A Sigstore bundle reduced to what verification needs.

    Attributes:
        media_type: The bundle's ``mediaType``.
        key_hint: ``publicKey.hint`` (key mode), or None when the bundle has no public key material.
        certificates: DER certificates, leaf first (``x509CertificateChain`` or ``certificate``).
        tlog_entries: How many transparency-log entries the bundle carries.
        payload_type: DSSE ``payloadType``.
        payload: The decoded DSSE payload (the statement's JSON bytes).
        signatures: Decoded DSSE signatures, in order (only the first is checked, like model-signing).
        raw: The bundle's JSON bytes, for libraries that parse it themselves (sigstore).
    """

    media_type: str
    key_hint: str | None
    certificates: tuple[bytes, ...]
    tlog_entries: int
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]
    raw: bytes


def b64decode(text: str, what: str) -> bytes:
    """Decode protobuf-JSON bytes: standard or URL-safe base64, padding optional."""
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    alphabet = b"-_" if ("-" in padded or "_" in padded) else None
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureRejected(codes.MALFORMED_BUNDLE, f"{what} is not valid base64") from exc


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes that are signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def parse_bundle(data: bytes, *, max_bytes: int = MAX_BUNDLE_BYTES) -> ParsedBundle:
    """Parse a Sigstore bundle with a DSSE envelope.

    Raises:
        SignatureRejected: malformed JSON or fields, unknown media type, no DSSE envelope.
    """
    if len(data) > max_bytes:
        raise SignatureRejected(codes.MALFORMED_BUNDLE, f"bundle is {len(data)} bytes, more than {max_bytes}")
    try:
        model = _Bundle.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise SignatureRejected(codes.MALFORMED_BUNDLE, f"bundle is malformed at {where}: {first['msg']}") from exc
    if model.media_type not in BUNDLE_MEDIA_TYPES:
        raise SignatureRejected(codes.UNSUPPORTED_BUNDLE, f"unsupported bundle media type {model.media_type!r}")
    if model.dsse_envelope is None:
        raise SignatureRejected(
            codes.UNSUPPORTED_BUNDLE, "bundle has no DSSE envelope (message signatures are not model signatures)"
        )
    material = model.verification_material
    certs: list[bytes] = []
    if material.x509_certificate_chain is not None:
        certs = [b64decode(c.raw_bytes, "certificate") for c in material.x509_certificate_chain.certificates]
    elif material.certificate is not None:
        certs = [b64decode(material.certificate.raw_bytes, "certificate")]
    env = model.dsse_envelope
    return ParsedBundle(
        media_type=model.media_type,
        key_hint=material.public_key.hint.lower() if material.public_key is not None else None,
        certificates=tuple(certs),
        tlog_entries=len(material.tlog_entries),
        payload_type=env.payload_type,
        payload=b64decode(env.payload, "DSSE payload"),
        signatures=tuple(b64decode(s.sig, "DSSE signature") for s in env.signatures),
        raw=data,
    )


class _Subject(_Proto):
    name: str = ""
    digest: dict[str, str] = Field(default_factory=dict)


class _Resource(_Proto):
    name: str
    algorithm: str
    digest: str


class _Serialization(_Proto):
    method: str
    hash_type: str
    allow_symlinks: bool = False
    ignore_paths: list[str] = Field(default_factory=list)
    shard_size: StrictInt | StrictFloat | None = None


class _Predicate(_Proto):
    serialization: _Serialization
    resources: list[_Resource] = Field(default_factory=list)


class _Statement(_Proto):
    type_: str = Field(alias="_type")
    subject: list[_Subject]
    predicate_type: str = Field(alias="predicateType")
    predicate: dict[str, object] = Field(default_factory=dict)


def _hex(value: str, what: str) -> str:
    try:
        bytes.fromhex(value)
    except ValueError as exc:
        raise SignatureRejected(codes.BAD_STATEMENT, f"{what} is not a hex digest: {value[:80]!r}") from exc
    if not value:
        raise SignatureRejected(codes.BAD_STATEMENT, f"{what} is empty")
    return value.lower()


def root_digest(resources: tuple[SignedResource, ...]) -> str:
    """OMS root digest: sha256 over the raw resource digests, in the listed order."""
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r.digest))
    return h.hexdigest()


def _shard_size(value: int | float | None) -> int:
    # protobuf JSON turns the integer into a float (8192.0); only whole, positive values make sense
    if value is None or not math.isfinite(value) or value != int(value) or value < 1:
        raise SignatureRejected(
            codes.BAD_STATEMENT, f"shards serialization needs a positive whole shard_size, got {value!r}"
        )
    return int(value)


def parse_statement(payload: bytes, *, allow_legacy: bool) -> SignedManifest:
    """Parse and check an OMS in-toto statement (v1.0, or legacy v0.1 when allowed).

    Raises:
        SignatureRejected: not an OMS statement, legacy refused, malformed fields, or a root
            digest that does not match the resources (``ROOT_MISMATCH``).
    """
    try:
        st = _Statement.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise SignatureRejected(codes.BAD_STATEMENT, f"statement is malformed at {where}: {first['msg']}") from exc
    if st.type_ != STATEMENT_V1:
        raise SignatureRejected(codes.BAD_STATEMENT, f"statement _type is {st.type_!r}, expected {STATEMENT_V1}")
    if st.predicate_type == LEGACY_V01_PREDICATE:
        if not allow_legacy:
            raise SignatureRejected(codes.LEGACY_REFUSED, "legacy predicate https://model_signing/Digests/v0.1 refused")
        return _legacy(st)
    if st.predicate_type != OMS_V1_PREDICATE:
        raise SignatureRejected(codes.BAD_STATEMENT, f"unsupported predicateType {st.predicate_type!r}")
    if len(st.subject) != 1:
        raise SignatureRejected(codes.BAD_STATEMENT, f"OMS v1.0 needs exactly one subject, got {len(st.subject)}")
    try:
        pred = _Predicate.model_validate(st.predicate)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SignatureRejected(codes.BAD_STATEMENT, f"predicate is malformed at {where}: {first['msg']}") from exc
    ser = pred.serialization
    if ser.hash_type not in HASH_TYPES:
        raise SignatureRejected(codes.BAD_STATEMENT, f"unsupported hash_type {ser.hash_type!r}")
    if ser.method == SerializationMethod.FILES.value:
        method, shard = SerializationMethod.FILES, None
    elif ser.method == SerializationMethod.SHARDS.value:
        method, shard = SerializationMethod.SHARDS, _shard_size(ser.shard_size)
    else:
        raise SignatureRejected(codes.BAD_STATEMENT, f"unsupported serialization method {ser.method!r}")
    resources = tuple(
        SignedResource(r.name, r.algorithm, _hex(r.digest, f"digest of {r.name!r}")) for r in pred.resources
    )
    claimed = _hex(st.subject[0].digest.get("sha256", ""), "subject sha256")
    actual = root_digest(resources)
    if claimed != actual:
        raise SignatureRejected(
            codes.ROOT_MISMATCH, f"manifest is inconsistent: subject digest {claimed}, resources hash to {actual}"
        )
    return SignedManifest(
        predicate_type=st.predicate_type,
        method=method,
        hash_type=ser.hash_type,
        shard_size=shard,
        allow_symlinks=ser.allow_symlinks,
        ignore_paths=tuple(ser.ignore_paths),
        resources=resources,
        root_digest=actual,
        model_name=st.subject[0].name,
    )


def _legacy(st: _Statement) -> SignedManifest:
    # v0.1 (model-signing 0.2): one subject per file, digest.sha256 of the file; the predicate is unused
    if not st.subject:
        raise SignatureRejected(codes.BAD_STATEMENT, "legacy statement has no subject")
    resources = tuple(
        SignedResource(s.name, "sha256", _hex(s.digest.get("sha256", ""), f"digest of {s.name!r}")) for s in st.subject
    )
    return SignedManifest(
        predicate_type=st.predicate_type,
        method=SerializationMethod.FILES,
        hash_type="sha256",
        shard_size=None,
        allow_symlinks=False,
        ignore_paths=(),
        resources=resources,
        root_digest=root_digest(resources),
        model_name="",
        legacy=True,
    )


def statement_json(obj: dict[str, object]) -> bytes:
    """Serialize a statement the way model-signing does (2-space indent, UTF-8)."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()
