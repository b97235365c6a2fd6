"""``weightguard verify``: the whole gate on one model, with an optional signed approval."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from weightguard.cli.common import (
    FORMAT_OPTION,
    INSECURE_REGISTRY_OPTION,
    OUTPUT_OPTION,
    POLICY_OPTION,
    REGISTRY_AUTH_OPTION,
    REGISTRY_CA_OPTION,
    OutputFormat,
    emit_report,
    err,
    fail,
)
from weightguard.cli.hash import LISTING_OPTION
from weightguard.cli.progress import QUIET_OPTION, progress_display, wanted
from weightguard.errors import WeightguardError

if TYPE_CHECKING:
    from weightguard.pipeline import VerifyOptions
    from weightguard.report.model import Report


def verify_command(
    target: str = typer.Argument(..., help="Model directory or file, or hf://org/name@REVISION."),
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    policy: list[Path] = POLICY_OPTION,
    attest: Path | None = typer.Option(None, "--attest", help="PEM private key: sign an approval attestation."),
    attestation: Path | None = typer.Option(None, "--attestation", help="Where to write the attestation bundle."),
    attest_failed: bool = typer.Option(False, "--attest-failed", help="Also attest rejected/incomplete runs (FAILED)."),
    attach: bool = typer.Option(
        False, "--attach", help="oci:// only: push an approval attestation to the registry as a referrer of the model."
    ),
    convert_to: Path | None = typer.Option(
        None, "--convert-to", help="Where converted safetensors go when the policy's conversion mode asks for it."
    ),
    registry_auth_file: Path | None = REGISTRY_AUTH_OPTION,
    insecure_registry: list[str] = INSECURE_REGISTRY_OPTION,
    registry_ca_bundle: Path | None = REGISTRY_CA_OPTION,
    quiet: bool = QUIET_OPTION,
    hub_listing: Path | None = LISTING_OPTION,
) -> None:
    """Verify a model under the policy; exit 0 approved, 1 rejected, 2 incomplete."""
    from weightguard.convert.interrupt import stop_cleanly_on_signals
    from weightguard.pipeline import VerifyOptions, verify
    from weightguard.policy.load import load_policy
    from weightguard.verdict.attestation import load_attestation_key

    try:
        loaded = load_policy(policy)
        spec = loaded.policy.spec.rollout.attestation
        base = loaded.base_dir
        options = VerifyOptions(
            attest_key=attest or (base / spec.signing_key if spec.signing_key else None),
            attestation_path=attestation or (Path(spec.location) if spec.location else None),
            attest_failed=attest_failed,
            convert_dir=convert_to,
            registry_auth_file=registry_auth_file,
            insecure_registries=tuple(insecure_registry),
            registry_ca_bundle=registry_ca_bundle,
            hub_listing=hub_listing,
        )
        if attach:
            from weightguard.cli.oci_attest import check_attach_usage  # httpx only when asked

            check_attach_usage(target, options.attest_key)
        if options.attest_key is not None:
            # Checked before any work: a missing or unusable key is "could not complete" (exit 2),
            # not a late failure after the model was judged (issue 16).
            load_attestation_key(options.attest_key)
        # With --convert-to, SIGTERM/SIGINT exit 143/130 through the conversion's clean-up (issue 16).
        stopping = stop_cleanly_on_signals() if convert_to is not None else contextlib.nullcontext()
        with stopping, contextlib.ExitStack() as stack, progress_display(wanted(quiet)) as display:
            if target.startswith("oci://"):  # the pulled files live only as long as this run
                work = stack.enter_context(tempfile.TemporaryDirectory(prefix="weightguard-oci-"))
                options = dataclasses.replace(options, oci_dir=Path(work) / "model")
            report = verify(target, loaded, options, progress=display.say)
        emit_report(report, fmt, output)
        if attach:
            _attach(report, options)
    except WeightguardError as exc:
        raise fail(exc) from exc
    raise typer.Exit(report.exit_code)


def _attach(report: Report, options: VerifyOptions) -> None:
    """Push an approval to the registry; say on stderr what was (not) attached."""
    from weightguard.cli.oci_attest import RegistryAccess, attach_approval

    access = RegistryAccess(options.registry_auth_file, options.insecure_registries, options.registry_ca_bundle)
    attached = attach_approval(report, access)
    if attached is None:
        err(f"weightguard: verdict {report.verdict}: no attestation attached to the registry (only approvals are)")
        return
    err(
        f"weightguard: attestation attached to {attached.subject.digest} as referrer {attached.referrer.digest}"
        f" (listed by the {attached.listing})"
    )


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("verify")(verify_command)
