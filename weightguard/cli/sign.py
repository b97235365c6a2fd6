"""``weightguard sign``: write an OMS v1.0 signature (Sigstore bundle, DSSE, in-toto) for a model directory."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from weightguard.cli.common import err, fail
from weightguard.errors import UsageError, WeightguardError
from weightguard.fsutil import write_atomic


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def sign_command(
    target: Path = typer.Argument(..., help="Model directory to sign."),  # noqa: B008
    key: Path = typer.Option(..., "--key", "-k", help="Private key (PEM; ECDSA P-256/P-384, or Ed25519)."),  # noqa: B008
    certificate_chain: list[Path] = typer.Option(  # noqa: B008
        [], "--certificate-chain", help="Signing certificate first, then intermediates (PEM); repeatable."
    ),
    output: Path = typer.Option(Path("model.sig"), "--output", "-o", help="Where to write the signature."),  # noqa: B008
    ignore_paths: list[str] = typer.Option(  # noqa: B008
        [], "--ignore-path", help="Path relative to TARGET to leave unsigned (recorded in the signature); repeatable."
    ),
    ignore_git_paths: bool = typer.Option(
        True, "--ignore-git-paths/--no-ignore-git-paths", help="Leave .git* unsigned."
    ),
    password_env: str | None = typer.Option(None, "--password-env", help="Read the key password from this variable."),
) -> None:
    """Sign TARGET (files + sha256, OMS v1.0). Exit 0 written, 2 could not sign."""
    from cryptography import x509

    from weightguard.signing.keys import load_private_key
    from weightguard.signing.model_signing import sign_model

    try:
        password = None
        if password_env is not None:
            if password_env not in os.environ:
                raise UsageError(f"environment variable {password_env} is not set")
            password = os.environ[password_env].encode()
        private_key = load_private_key(_read(key, "private key"), password)
        chain: list[x509.Certificate] = []
        for path in certificate_chain:
            try:
                chain.extend(x509.load_pem_x509_certificates(_read(path, "certificate")))
            except ValueError as exc:
                raise UsageError(f"{path} is not a PEM certificate file") from exc
        data = sign_model(
            target,
            private_key,
            chain or None,
            signature_path=output,
            ignore_paths=ignore_paths,
            ignore_git_paths=ignore_git_paths,
        )
        write_atomic(output, data.decode())
    except WeightguardError as exc:
        raise fail(exc) from exc
    kind = "certificate chain" if chain else "public key hint"
    err(f"weightguard: signed {target} ({kind}); signature written to {output}")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("sign")(sign_command)
