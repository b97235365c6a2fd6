"""OpenSSF Model Signing (OMS) v1.0: verify a model directory against a signature bundle.

Steps (SIGNING.md 1.5, with weightguard's stricter choices marked *):
1. parse the Sigstore bundle; a bundle with no DSSE signature fails*;
2. verify ``signatures[0]`` with the given verifier (key, certificate chain or Sigstore);
3. require ``payloadType`` in-toto, ``_type`` Statement v1, the OMS v1.0 predicate (legacy v0.1
   only when allowed*), exactly one subject, and a root digest equal to sha256 over the
   resource digests in the listed order;
4. check every signed resource name for path safety in every mode*, duplicates and case
   collisions*, before anything is looked up on disk;
5. apply the signer's recorded ``ignore_paths`` (shown as a note; the policy may refuse them*)
   and skip the signature file itself when it lies inside the model;
6. hash the local model with the signature's own serialization (files|shards, sha256|blake2b|
   blake3, shard size), reading only files that weightguard's own walk listed inside the root*,
   and compare exact maps: mismatched, missing, extra. ``ignore_unsigned_files`` tolerates extra
   files (missing ones still fail); the policy can tolerate named extras*.

Results are :class:`SignatureCheck` records with findings; only "could not check" raises.
Signing lives in :mod:`weightguard.signing.oms_sign` (re-exported here as :func:`sign_model`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from weightguard.errors import SourceError
from weightguard.findings import Finding, RuleKind, Severity
from weightguard.signing import codes
from weightguard.signing.bundle import IN_TOTO_PAYLOAD_TYPE, parse_bundle, parse_statement
from weightguard.signing.interface import (
    SerializationMethod,
    SignatureRejected,
    SignatureVerifier,
    SignedManifest,
    SignerInfo,
    VerifiedSignature,
)
from weightguard.signing.local import Hasher, default_hasher, hash_resources
from weightguard.signing.oms_sign import sign_model
from weightguard.signing.paths import (
    DEFAULT_GIT_IGNORES,
    SINGLE_FILE_NAME,
    escapes_root,
    is_under,
    matches_any,
    normalize_ignore,
    relative_inside,
    split_shard,
    unsafe_reason,
)
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.local import LocalSource


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """How tolerant verification is. Every permissive switch is named ``allow_*``/``ignore_*``.

    Attributes:
        allow_legacy: Accept the old ``Digests/v0.1`` predicate.
        ignore_unsigned_files: Tolerate every extra file (model-signing's ``--ignore_unsigned_files``).
        allow_signer_ignore_paths: Honour the signer's recorded ``ignore_paths`` (OMS default).
        allow_unsigned_files: Extra files tolerated by the policy (paths or globs).
        allow_symlinks: Follow in-root symlinks when the signature also allowed them.
    """

    allow_legacy: bool = False
    ignore_unsigned_files: bool = False
    allow_signer_ignore_paths: bool = True
    allow_unsigned_files: tuple[str, ...] = ()
    allow_symlinks: bool = False


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """How the local model differs from the signed manifest (resource names)."""

    matched: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    tolerated: tuple[str, ...] = ()
    unsafe: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome of checking one signature against one model.

    ``findings`` holds failures (any severity above INFO, or an error) and notes (INFO).
    """

    signature: str
    findings: tuple[Finding, ...]
    signer: SignerInfo | None = None
    manifest: SignedManifest | None = None
    diff: ManifestDiff | None = None
    ignore_paths_applied: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[Finding, ...]:
        """Findings that make the signature not hold."""
        return tuple(f for f in self.findings if f.kind is not RuleKind.FINDING or f.severity is not Severity.INFO)

    @property
    def holds(self) -> bool:
        """True when the signature verified, the signer is trusted and every signed file matched."""
        return not self.failures and self.signer is not None and self.diff is not None

    @property
    def verified(self) -> VerifiedSignature | None:
        """The trusted signer and the files it covers, when the signature holds."""
        if not self.holds or self.signer is None or self.manifest is None or self.diff is None:
            return None
        return VerifiedSignature(self.signer, self.manifest, self.diff.matched)


def verify_model_signature(
    root: Path,
    bundle_data: bytes,
    verifier: SignatureVerifier,
    options: VerifyOptions = VerifyOptions(),  # noqa: B008 - frozen record, safe as a default
    *,
    signature_path: Path | None = None,
    hasher: Hasher = default_hasher,
) -> SignatureCheck:
    """Check ``bundle_data`` (an OMS signature) against the model at ``root``.

    Args:
        root: Model directory (or single file).
        bundle_data: The signature file's bytes.
        verifier: Key, certificate or Sigstore verifier holding the trust material.
        options: Tolerances (legacy predicate, unsigned files, signer ignore paths).
        signature_path: Where the signature was read from; skipped when inside ``root``.
        hasher: Hashing function (the integrity stage's ``hash_files`` by default).

    Raises:
        SourceError: the model path does not exist.
        TrustMaterialError, MissingExtraError: the trust material cannot be used.
        IntegrityError: hashing failed.
    """
    name = signature_path.name if signature_path is not None else "signature"
    if not os.path.lexists(root):
        raise SourceError(f"no such file or directory: {root}")
    try:
        signer, manifest = _verified_manifest(bundle_data, verifier, options)
    except SignatureRejected as exc:
        return SignatureCheck(name, (exc.rule.at(name, exc.message),))
    return _Comparison(root, manifest, options, name, signature_path, hasher).run(signer)


def _verified_manifest(
    bundle_data: bytes, verifier: SignatureVerifier, options: VerifyOptions
) -> tuple[SignerInfo, SignedManifest]:
    """Steps 1 to 3: parse, verify signatures[0], then read the statement the signature covers."""
    bundle = parse_bundle(bundle_data)
    if not bundle.signatures:
        raise SignatureRejected(codes.NO_SIGNATURE, "the DSSE envelope has no signature")
    verifier.verify(bundle)
    signer = verifier.signer(bundle)
    if bundle.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise SignatureRejected(codes.WRONG_PAYLOAD_TYPE, f"payloadType is {bundle.payload_type!r}")
    return signer, parse_statement(bundle.payload, allow_legacy=options.allow_legacy)


class _Comparison:
    """One comparison of a verified manifest with the local files (steps 4 to 6)."""

    def __init__(
        self,
        root: Path,
        manifest: SignedManifest,
        options: VerifyOptions,
        name: str,
        sig_path: Path | None,
        hasher: Hasher,
    ) -> None:
        self.root, self.manifest, self.options, self.name, self.hasher = root, manifest, options, name, hasher
        self.single_file = root.is_file()
        self.own = relative_inside(root, sig_path) if sig_path is not None and not self.single_file else None
        self.findings: list[Finding] = []

    def _name_problem(self, name: str) -> str | None:
        path = name
        if self.manifest.method is SerializationMethod.SHARDS:
            parts = split_shard(name)
            if parts is None:
                return "not a 'path:start:end' shard name"
            path = parts[0]
        reason = unsafe_reason(path, single_file=self.single_file)
        if reason is None:
            try:
                if escapes_root(self.root, path):
                    reason = "resolves outside the model root"
            except (OSError, RuntimeError):
                reason = "cannot be resolved (symlink loop or unreadable)"
        return reason

    def _signed(self) -> tuple[dict[str, tuple[str, str]], list[str]]:
        signed: dict[str, tuple[str, str]] = {}
        unsafe: list[str] = []
        folded: dict[str, str] = {}
        for r in self.manifest.resources:
            reason = self._name_problem(r.name)
            if reason is not None:
                unsafe.append(r.name)
                self.findings.append(
                    codes.UNSAFE_NAME.at(self.name, f"signed resource {r.name!r}: {reason}", resource=repr(r.name))
                )
                continue
            if r.name in signed:
                self.findings.append(
                    codes.DUPLICATE_NAME.at(self.name, f"resource {r.name!r} is signed twice", resource=r.name)
                )
                continue
            other = folded.setdefault(r.name.casefold(), r.name)
            if other != r.name:
                self.findings.append(
                    codes.DUPLICATE_NAME.at(
                        self.name, f"resources {other!r} and {r.name!r} differ only by case", resource=r.name
                    )
                )
            signed[r.name] = (r.algorithm, r.digest)
        if not self.manifest.resources:
            self.findings.append(codes.BAD_STATEMENT.at(self.name, "the signature covers no file"))
        return signed, unsafe

    def _ignores(self) -> tuple[str, ...]:
        if self.manifest.legacy:
            # v0.1 records no ignore list: the verifier's defaults apply, as in model-signing's CLI
            return DEFAULT_GIT_IGNORES
        recorded = self.manifest.ignore_paths
        usable = tuple(p for p in (normalize_ignore(x) for x in recorded) if p is not None)
        dropped = sorted(set(recorded) - set(usable) - {p + "/" for p in usable})
        if not recorded:
            return ()
        if not self.options.allow_signer_ignore_paths:
            self.findings.append(
                codes.SIGNER_IGNORES_REFUSED.at(
                    self.name, "signer ignore paths not honoured by policy", paths=", ".join(recorded)
                )
            )
            return ()
        self.findings.append(
            codes.SIGNER_IGNORES.at(
                self.name,
                f"signer excluded {len(usable)} path(s) from the signature",
                paths=", ".join(sorted(usable)),
                not_applied=", ".join(dropped),
            )
        )
        return usable

    def _at(self, rule_name: str) -> tuple[str, str]:
        if self.manifest.method is SerializationMethod.SHARDS:
            parts = split_shard(rule_name)
            if parts is not None:
                return parts[0], f"{parts[1]}:{parts[2]}"
        return rule_name, ""

    def run(self, signer: SignerInfo) -> SignatureCheck:
        signed, unsafe = self._signed()
        applied = self._ignores()
        m = self.manifest
        shards = m.method is SerializationMethod.SHARDS
        signed_paths = {(split_shard(n) or (n, 0, 0))[0] if shards else n for n in signed}
        listing = LocalSource(self.root, allow_symlinks=self.options.allow_symlinks and m.allow_symlinks).collect()
        to_hash: list[ArtifactFile] = []
        extra_files: list[ArtifactFile] = []
        for f in listing.files:
            rel = SINGLE_FILE_NAME if self.single_file else f.relpath
            if (
                is_under(f.relpath, applied)
                or f.relpath == self.own
                or (shards and f.size == 0 and rel not in signed_paths)
            ):
                continue
            (to_hash if rel in signed_paths else extra_files).append(f)
        for finding in listing.findings:
            if not is_under(finding.path, applied) and (
                not self.options.ignore_unsigned_files or finding.path in signed_paths
            ):
                self.findings.append(finding)
        local = hash_resources(
            to_hash,
            method=m.method,
            hash_type=m.hash_type,
            shard_size=m.shard_size,
            hasher=self.hasher,
            single_file=self.single_file,
        )
        matched: list[str] = []
        mismatched: list[str] = []
        missing: list[str] = []
        for res_name, expected in signed.items():
            got = local.get(res_name)
            (missing if got is None else matched if got == expected else mismatched).append(res_name)
        extras = sorted([n for n in local if n not in signed] + [f.relpath for f in extra_files])
        tolerated = [
            n
            for n in extras
            if self.options.ignore_unsigned_files or matches_any(self._at(n)[0], self.options.allow_unsigned_files)
        ]
        for n in mismatched:
            self.findings.append(
                codes.DIGEST_MISMATCH.at(
                    *self._at(n)[:1],
                    f"content differs from the signed {m.hash_type} digest",
                    member=self._at(n)[1],
                    expected=signed[n][1],
                    actual=local[n][1],
                )
            )
        for n in missing:
            self.findings.append(codes.MISSING_FILE.at(self._at(n)[0], "signed but not present", member=self._at(n)[1]))
        for n in extras:
            rule = codes.UNSIGNED_TOLERATED if n in tolerated else codes.UNSIGNED_FILE
            self.findings.append(rule.at(self._at(n)[0], "not covered by the signature", member=self._at(n)[1]))
        diff = ManifestDiff(
            tuple(matched),
            tuple(mismatched),
            tuple(missing),
            tuple(n for n in extras if n not in tolerated),
            tuple(tolerated),
            tuple(unsafe),
        )
        check = SignatureCheck(self.name, tuple(self.findings), signer, m, diff, applied)
        if check.holds:
            note = codes.SIGNED_BY.at(
                self.name,
                f"signed by {signer.description}; {len(matched)} resource(s) match",
                root_digest=m.root_digest,
                method=m.method.value,
                hash_type=m.hash_type,
            )
            check = SignatureCheck(self.name, (*check.findings, note), signer, m, diff, applied)
        return check


__all__ = ["ManifestDiff", "SignatureCheck", "VerifyOptions", "sign_model", "verify_model_signature"]
