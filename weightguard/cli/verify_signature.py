"""``weightguard verify-signature``: check an OMS signature against a model, with explicit trust material."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer

from weightguard.cli.common import err, fail
from weightguard.errors import EXIT_BLOCKED, EXIT_OK, UsageError, WeightguardError


class SignatureFormat(StrEnum):
    """Output formats of this command."""

    TEXT = "text"
    JSON = "json"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def verify_signature_command(  # noqa: PLR0913 - one option per trust input, as the issue specifies
    target: Path = typer.Argument(..., help="Model directory (or single file)."),  # noqa: B008
    signature: Path = typer.Option(Path("model.sig"), "--signature", "-s", help="The signature bundle."),  # noqa: B008
    public_key: Path | None = typer.Option(None, "--public-key", help="Trusted public key (PEM)."),  # noqa: B008
    ca: Path | None = typer.Option(None, "--ca", help="Trusted root CA(s) for certificate chains (PEM)."),  # noqa: B008
    identity: str | None = typer.Option(None, "--identity", help="Sigstore: expected signer identity (exact)."),
    issuer: str | None = typer.Option(None, "--issuer", help="Sigstore: expected OIDC issuer."),
    trust_root: Path | None = typer.Option(None, "--sigstore-trust-root", help="Sigstore: pinned trusted_root.json."),  # noqa: B008
    ca_now: bool = typer.Option(
        False, "--ca-check-now", help="Check certificate validity now, not at the leaf's notBefore."
    ),
    ignore_unsigned: bool = typer.Option(
        False, "--ignore-unsigned-files", help="Tolerate files the signature does not cover."
    ),
    allow_legacy: bool = typer.Option(False, "--allow-legacy", help="Accept legacy Digests/v0.1 signatures."),
    refuse_signer_ignores: bool = typer.Option(
        False, "--refuse-signer-ignore-paths", help="Treat files under signer-recorded ignore paths as unsigned."
    ),
    fmt: SignatureFormat = typer.Option(SignatureFormat.TEXT, "--format", "-f", case_sensitive=False),  # noqa: B008
) -> None:
    """Verify SIGNATURE for TARGET. Exit 0 holds, 1 does not hold, 2 could not check."""
    from weightguard.signing.certificates import certificate_verifier
    from weightguard.signing.interface import SignatureVerifier
    from weightguard.signing.keys import KeyVerifier
    from weightguard.signing.model_signing import VerifyOptions, verify_model_signature
    from weightguard.signing.report import render_text, signature_report
    from weightguard.signing.sigstore_keyless import SigstoreVerifier

    try:
        chosen = [public_key is not None, ca is not None, identity is not None or trust_root is not None]
        if sum(chosen) != 1:
            raise UsageError("give exactly one of --public-key, --ca, or --identity/--issuer/--sigstore-trust-root")
        verifier: SignatureVerifier
        if public_key is not None:
            verifier = KeyVerifier.from_pem(_read(public_key, "public key"))
        elif ca is not None:
            verifier = certificate_verifier(_read(ca, "root CA"), now=ca_now)
        else:
            if identity is None or issuer is None or trust_root is None:
                raise UsageError("Sigstore verification needs --identity, --issuer and --sigstore-trust-root")
            verifier = SigstoreVerifier(trust_root, issuer, identity=identity)
        if ignore_unsigned:
            err("weightguard: warning: --ignore-unsigned-files: files not covered by the signature are tolerated")
        options = VerifyOptions(
            allow_legacy=allow_legacy,
            ignore_unsigned_files=ignore_unsigned,
            allow_signer_ignore_paths=not refuse_signer_ignores,
        )
        check = verify_model_signature(
            target, _read(signature, "signature"), verifier, options, signature_path=signature
        )
    except WeightguardError as exc:
        raise fail(exc) from exc
    report = signature_report(check)
    if fmt is SignatureFormat.JSON:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        sys.stderr.write(render_text(report))
    raise typer.Exit(EXIT_OK if check.holds else EXIT_BLOCKED)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("verify-signature")(verify_signature_command)
