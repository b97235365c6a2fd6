"""``weightguard lock``: write a model's digests as a policy fragment a team commits.

The fragment is ``spec: integrity: pinned: {relpath: "sha256:<hex>"}`` in OMS
order, ready to merge into a policy file, like a lock file with hashes. It is
written to stdout, or atomically to ``--output``. Nothing is written when the
model has a finding of medium severity or worse (a lock must not bless a
tampered cache or a refused symlink): exit 1, or 2 when the job could not
complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from weightguard.cli.common import OUTPUT_OPTION, POLICY_OPTION, err, fail
from weightguard.cli.hash import (
    ALGORITHM_OPTION,
    LISTING_OPTION,
    Algorithm,
    HashedTarget,
    hash_target,
    load_spec,
    report_findings,
)
from weightguard.errors import EXIT_OK, WeightguardError
from weightguard.fsutil import write_atomic


def render_lock(hashed: HashedTarget, algorithm: str) -> str:
    """The YAML policy fragment pinning every file of ``hashed``."""
    import yaml  # here, not at import: ``--help`` and completion load this module too

    pinned = {r.name: f"{algorithm}:{r.digest}" for r in hashed.manifest.files(algorithm)}
    header = [f"# weightguard lock of {hashed.uri}"]
    if hashed.commit:
        header.append(f"# commit {hashed.commit}")
    header.append(f"# OMS root digest {hashed.manifest.root_digest(algorithm)}")
    header.append("# Review every change to this file: it decides which bytes may be deployed.")
    body: str = yaml.safe_dump(
        {"spec": {"integrity": {"algorithm": algorithm, "pinned": pinned}}},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )
    return "\n".join(header) + "\n" + body


def lock_command(
    target: str = typer.Argument(..., help="Local file or directory, or hf://org/name@REVISION."),
    output: Path | None = OUTPUT_OPTION,
    algorithm: Algorithm | None = ALGORITHM_OPTION,
    policy: Path | None = POLICY_OPTION,
    listing: Path | None = LISTING_OPTION,
) -> None:
    """Write the pinned digests of every file as a `spec.integrity.pinned` policy fragment."""
    try:
        spec = load_spec(policy)
        chosen = algorithm.value if algorithm else spec.algorithm
        hashed = hash_target(target, spec, chosen, listing)
        report_findings(hashed.findings)
        if hashed.exit_code != EXIT_OK:
            err("weightguard: not locking a model with findings (see above)")
            raise typer.Exit(hashed.exit_code)
        text = render_lock(hashed, chosen)
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_atomic(output, text)
            err(f"weightguard: pinned {len(hashed.manifest.entries)} files in {output}")
    except WeightguardError as exc:
        raise fail(exc) from exc


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("lock")(lock_command)
