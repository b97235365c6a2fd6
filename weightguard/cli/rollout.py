"""Staged rollout commands: ``promote``, ``approve``, ``status``, ``history``, ``revoke``, ``attestation verify``.

Every command that changes the record first re-hashes the model on disk, so
a promotion always concerns the exact bytes that were attested.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from pathlib import Path

import typer

from weightguard.cli.common import (
    INSECURE_REGISTRY_OPTION,
    POLICY_OPTION,
    REGISTRY_AUTH_OPTION,
    REGISTRY_CA_OPTION,
    err,
    fail,
)
from weightguard.errors import SignatureError, UsageError, WeightguardError

attestation_app = typer.Typer(help="Check approval attestations.", no_args_is_help=True)

DATABASE_OPTION = typer.Option(
    None,
    "--database",
    help="Rollout record URL (default: the policy's spec.rollout.database, else the user's state directory).",
)
STAGE_OPTION = typer.Option(None, "--stage", help="The stage.")
# `promote --to` was the old spelling; one name (--stage) for every rollout command now (issue 18).
DEPRECATED_TO_OPTION = typer.Option(None, "--to", hidden=True, help="Deprecated: use --stage.")
ACTOR_OPTION = typer.Option(None, "--actor", help="Who is acting (default: the login name).")
PUBLIC_KEY_OPTION = typer.Option(
    None, "--public-key", help="The approver's PEM public key (default: the policy's rollout.attestation.trusted_keys)."
)


def _trusted_keys(loaded, given: Path | None) -> list[Path]:  # type: ignore[no-untyped-def]
    """The keys an attestation may be signed with: the one given, else the policy's trusted keys."""
    if given is not None:
        return [given]
    keys = [loaded.base_dir / k for k in loaded.policy.spec.rollout.attestation.trusted_keys]
    if not keys:
        raise UsageError(
            "no public key to check the attestation with",
            hint="pass --public-key or set rollout.attestation.trusted_keys",
        )
    return keys


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _store(loaded, database: str | None):  # type: ignore[no-untyped-def]
    from weightguard.state import database_url
    from weightguard.verdict.store import RolloutStore

    spec = loaded.policy.spec.rollout
    return RolloutStore(database_url(database, spec.database), first_stage=spec.stages[0])


def _stage(stage: str | None, to: str | None) -> str:
    """The stage named by --stage, or by the deprecated --to (with a warning)."""
    if to is not None:
        err("weightguard: warning: --to is deprecated; use --stage")
        if stage is not None and stage != to:
            raise UsageError(f"--stage {stage} and --to {to} disagree", hint="give only --stage")
    chosen = stage or to
    if chosen is None:
        raise UsageError("no stage given", hint="pass --stage STAGE")
    return chosen


def _check_attestation(target: str, loaded, attestation: Path, public_key: Path, exclude: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """Hash the model now and check the attestation against it; raises SignatureError when it does not hold."""
    from weightguard.pipeline import model_digest
    from weightguard.signing.keys import load_public_key
    from weightguard.verdict.attestation import verify_attestation

    resolved, digest = model_digest(target, loaded, exclude=exclude)
    key = load_public_key(_read(public_key, "public key"))
    checked = verify_attestation(
        _read(attestation, "attestation"), key, expected_root_digest=digest, expected_policy_sha256=loaded.sha256
    )
    return resolved, digest, checked


def _check_with_any(target: str, loaded, attestation: Path, keys: list[Path], exclude: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """Check against each trusted key in turn; the last refusal is raised if none holds."""
    last: SignatureError | None = None
    for key in keys:
        try:
            return _check_attestation(target, loaded, attestation, key, exclude)
        except SignatureError as exc:
            last = exc
    assert last is not None  # keys is never empty
    raise last


def _excluded(target: str, attestation: Path) -> tuple[str, ...]:
    try:
        return (attestation.resolve().relative_to(Path(target).resolve()).as_posix(),)
    except ValueError:
        return ()


@attestation_app.command("verify")
def attestation_verify_command(
    target: str = typer.Argument(..., help="The model: a path, or oci://HOST/REPO@sha256:… (attestations attached)."),
    attestation: Path | None = typer.Option(None, "--attestation", help="The attestation bundle (local targets)."),  # noqa: B008
    public_key: Path | None = PUBLIC_KEY_OPTION,
    policy: list[Path] = POLICY_OPTION,
    registry_auth_file: Path | None = REGISTRY_AUTH_OPTION,
    insecure_registry: list[str] = INSECURE_REGISTRY_OPTION,
    registry_ca_bundle: Path | None = REGISTRY_CA_OPTION,
) -> None:
    """Check an attestation: right signer, the model on disk (or in the registry) now, the expected policy. Exit 0 / 1 / 2."""
    from weightguard.policy.load import load_policy

    extra: dict[str, str] = {}
    try:
        loaded = load_policy(policy)
        keys = _trusted_keys(loaded, public_key)
        if target.startswith("oci://"):
            from weightguard.cli.oci_attest import RegistryAccess, verify_in_registry  # httpx only here

            access = RegistryAccess(registry_auth_file, tuple(insecure_registry), registry_ca_bundle)
            found = verify_in_registry(target, loaded, keys, access)
            digest, checked = found.root_digest, found.checked
            extra = {"manifest_digest": found.manifest_digest, "referrer": found.referrer}
        elif attestation is None:
            raise UsageError("--attestation is needed for a local model (oci:// targets carry their own)")
        else:
            _, digest, checked = _check_with_any(target, loaded, attestation, keys, _excluded(target, attestation))
    except SignatureError as exc:
        err(f"weightguard: attestation does not hold: {exc.diagnostics()}")
        raise typer.Exit(exc.exit_code) from exc
    except WeightguardError as exc:
        raise fail(exc) from exc
    answer = {
        "valid": True,
        "digest": digest,
        **extra,
        "verdict": checked.verdict,
        "result": checked.result,
        "checks": dict(checked.checks),
    }
    sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    raise typer.Exit(0 if checked.result == "PASSED" else 1)


def promote_command(
    target: str = typer.Argument(..., help="The model to promote."),
    stage: str | None = STAGE_OPTION,
    to: str | None = DEPRECATED_TO_OPTION,
    attestation: Path = typer.Option(..., "--attestation", help="The approval attestation for this model."),  # noqa: B008
    public_key: Path | None = PUBLIC_KEY_OPTION,
    policy: list[Path] = POLICY_OPTION,
    database: str | None = DATABASE_OPTION,
    actor: str | None = ACTOR_OPTION,
    mlflow_uri: str | None = typer.Option(
        None, "--mlflow-uri", help="MLflow tracking URI to write the promotion back to."
    ),
    mlflow_model: str | None = typer.Option(None, "--mlflow-model", help="Registered model name in MLflow."),
    mlflow_version: str | None = typer.Option(None, "--mlflow-version", help="Model version in MLflow."),
) -> None:
    """Promote a model one stage (--stage), if its attestation and the stage's requirements hold."""
    import hashlib

    from weightguard.pipeline import model_digest
    from weightguard.policy.load import load_policy
    from weightguard.signing.keys import load_public_key
    from weightguard.verdict.attestation import verify_attestation
    from weightguard.verdict.stage import PromotionEvidence, promotion_problems

    now = dt.datetime.now(dt.UTC)
    try:
        to = _stage(stage, to)
        loaded = load_policy(policy)
        resolved, digest = model_digest(target, loaded, exclude=_excluded(target, attestation))
        bundle = _read(attestation, "attestation")
        problem: str | None = "no trusted key verified the attestation"
        passed: frozenset[str] = frozenset()
        for key_path in _trusted_keys(loaded, public_key):
            key = load_public_key(_read(key_path, "public key"))
            try:
                checked = verify_attestation(
                    bundle, key, expected_root_digest=digest, expected_policy_sha256=loaded.sha256
                )
            except SignatureError as exc:
                problem = exc.message
                continue
            passed = frozenset(k for k, v in checked.checks.items() if v == "PASSED")
            problem = None if checked.result == "PASSED" else f"the attestation records verdict {checked.verdict}"
            break
        store = _store(loaded, database)
        store.register(digest, resolved.name, _actor(actor), now)
        spec = loaded.policy.spec.rollout
        evidence = PromotionEvidence(passed, store.approvers(digest, to), problem)
        state = store.promote(
            digest,
            to,
            actor=_actor(actor),
            now=now,
            attestation_sha256=hashlib.sha256(bundle).hexdigest(),
            check=lambda current: promotion_problems(spec, current, to, evidence, now),
        )
    except WeightguardError as exc:
        raise fail(exc) from exc
    err(f"{resolved.name} ({digest[:16]}…) is now in {state.stage}")
    if mlflow_uri and mlflow_model and mlflow_version:
        from weightguard.verdict.mlflow_writeback import MlflowTarget, write_promotion

        try:
            write_promotion(
                MlflowTarget(mlflow_uri, mlflow_model, mlflow_version),
                stage=state.stage,
                digest=digest,
                attestation_sha256=hashlib.sha256(bundle).hexdigest(),
            )
        except WeightguardError as exc:
            raise fail(exc) from exc
        err(f"MLflow {mlflow_model} v{mlflow_version}: alias {state.stage} and weightguard tags set")


def approve_command(
    target: str = typer.Argument(..., help="The model to approve."),
    stage: str | None = STAGE_OPTION,
    policy: list[Path] = POLICY_OPTION,
    database: str | None = DATABASE_OPTION,
    actor: str | None = ACTOR_OPTION,
) -> None:
    """Record a human approval for promoting a model into a stage (--stage)."""
    from weightguard.pipeline import model_digest
    from weightguard.policy.load import load_policy

    try:
        stage = _stage(stage, None)
        loaded = load_policy(policy)
        resolved, digest = model_digest(target, loaded)
        _store(loaded, database).approve(digest, stage, _actor(actor), dt.datetime.now(dt.UTC))
    except WeightguardError as exc:
        raise fail(exc) from exc
    err(f"{_actor(actor)} approved {resolved.name} ({digest[:16]}…) for {stage}")


def status_command(
    target: str = typer.Argument(..., help="The model."),
    policy: list[Path] = POLICY_OPTION,
    database: str | None = DATABASE_OPTION,
) -> None:
    """Print the model's current stage and where the record lives, as JSON (exit 1 if never recorded)."""
    from weightguard.pipeline import model_digest
    from weightguard.policy.load import load_policy
    from weightguard.state import database_url

    try:
        loaded = load_policy(policy)
        resolved, digest = model_digest(target, loaded)
        url = database_url(database, loaded.policy.spec.rollout.database)
        state = _store(loaded, url).state(digest)
    except WeightguardError as exc:
        raise fail(exc) from exc
    err(f"weightguard: state: {url}")
    body = {
        "name": resolved.name,
        "digest": digest,
        "stage": state.stage if state else None,
        "since": state.entered_at.isoformat() if state else None,
        "database": url,
    }
    sys.stdout.write(json.dumps(body, indent=2) + "\n")
    raise typer.Exit(0 if state else 1)


def history_command(
    target: str = typer.Argument(..., help="The model."),
    policy: list[Path] = POLICY_OPTION,
    database: str | None = DATABASE_OPTION,
) -> None:
    """Print the model's rollout history as JSON."""
    from weightguard.pipeline import model_digest
    from weightguard.policy.load import load_policy

    try:
        loaded = load_policy(policy)
        _, digest = model_digest(target, loaded)
        events = _store(loaded, database).history(digest)
    except WeightguardError as exc:
        raise fail(exc) from exc
    rows = [
        {
            "action": e.action,
            "from": e.from_stage,
            "to": e.to_stage,
            "actor": e.actor,
            "at": e.at.isoformat(),
            "attestation_sha256": e.attestation_sha256,
            "reason": e.reason,
        }
        for e in events
    ]
    sys.stdout.write(json.dumps({"digest": digest, "events": rows}, indent=2) + "\n")


def revoke_command(
    target: str = typer.Argument(..., help="The model (or a sha256 digest with --digest)."),
    reason: str = typer.Option(..., "--reason", help="Why: a new finding, a revoked signer, ..."),
    digest_given: bool = typer.Option(False, "--digest", help="TARGET is a root digest, not a path."),
    policy: list[Path] = POLICY_OPTION,
    database: str | None = DATABASE_OPTION,
    actor: str | None = ACTOR_OPTION,
) -> None:
    """Send a model back to the first stage."""
    from weightguard.pipeline import model_digest
    from weightguard.policy.load import load_policy

    try:
        loaded = load_policy(policy)
        digest = target if digest_given else model_digest(target, loaded)[1]
        state = _store(loaded, database).revoke(digest, reason=reason, actor=_actor(actor), now=dt.datetime.now(dt.UTC))
    except WeightguardError as exc:
        raise fail(exc) from exc
    err(f"{digest[:16]}… sent back to {state.stage}: {reason}")


def register(app: typer.Typer) -> None:
    """Add the rollout commands and the attestation group to ``app``."""
    app.command("promote")(promote_command)
    app.command("approve")(approve_command)
    app.command("status")(status_command)
    app.command("history")(history_command)
    app.command("revoke")(revoke_command)
    app.add_typer(attestation_app, name="attestation")
