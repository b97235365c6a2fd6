"""``weightguard lock``: pin a model's digests in a policy a team commits.

By default the output is a complete policy (``apiVersion``, ``kind``,
``metadata`` and ``spec.integrity.pinned`` in OMS order), so ``verify --policy
lock.yaml`` works as it is, and as a later ``--policy`` layer it adds the pins
to another policy. ``--overlay`` writes only the ``spec`` part (a partial
layer); ``--into policy.yaml`` replaces the pins (and the algorithm) of an
existing policy file and keeps everything else. Output goes to stdout, or
atomically to ``--output`` (``--into`` rewrites its file unless ``--output``
names another one).

What is pinned is what ``verify`` hashes into the model's identity: git
bookkeeping and the policy's signature files (``spec.signatures.files``,
``model.sig`` by default) are left out, since a signature is added after the
lock and is checked by its own stage. Nothing is written when the model has a
finding of medium severity or worse (a lock must not bless a tampered cache or
a refused symlink): exit 1, or 2 when the job could not complete.

``--into`` goes through PyYAML, which keeps no comments: the file's leading
comment block is kept, comments further down are lost (ruamel.yaml would keep
them, but is a dependency for one convenience). Every output is validated as
a policy (or layer) before it is written.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import typer

from weightguard.cli.common import OUTPUT_OPTION, POLICY_OPTION, err, fail
from weightguard.cli.hash import ALGORITHM_OPTION, LISTING_OPTION, Algorithm, HashedTarget, hash_target, report_findings
from weightguard.errors import EXIT_OK, PolicyError, UsageError, WeightguardError
from weightguard.fsutil import write_atomic


def pins_of(hashed: HashedTarget, algorithm: str) -> dict[str, str]:
    """Every file's pin, ``relpath -> "<algorithm>:<hex>"``, in OMS order."""
    return {r.name: f"{algorithm}:{r.digest}" for r in hashed.manifest.files(algorithm)}


def _header(hashed: HashedTarget, algorithm: str) -> str:
    lines = [f"# weightguard lock of {hashed.uri}"]
    if hashed.commit:
        lines.append(f"# commit {hashed.commit}")
    lines.append(f"# OMS root digest {hashed.manifest.root_digest(algorithm)}")
    lines.append("# Review every change to this file: it decides which bytes may be deployed.")
    return "\n".join(lines) + "\n"


def _dump(document: Mapping[str, object]) -> str:
    import yaml  # here, not at import: ``--help`` and completion load this module too

    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


def render_lock(hashed: HashedTarget, algorithm: str, *, overlay: bool = False) -> str:
    """A complete policy pinning every file of ``hashed`` (only its ``spec`` with ``overlay``)."""
    spec = {"spec": {"integrity": {"algorithm": algorithm, "pinned": pins_of(hashed, algorithm)}}}
    if overlay:
        return _header(hashed, algorithm) + _dump(spec)
    name = PurePosixPath(hashed.uri.split("@", 1)[0].rstrip("/")).name or "model"
    from weightguard.policy.schema import API_VERSION, KIND

    metadata = {"name": f"lock-{name}", "description": f"Pinned digests of {hashed.uri} (weightguard lock)."}
    return _header(hashed, algorithm) + _dump({"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, **spec})


def merge_into(text: str, origin: str, hashed: HashedTarget, algorithm: str) -> str:
    """``text`` (a policy or a layer) with its pins and algorithm replaced, everything else kept.

    Raises:
        PolicyError: ``text`` is not a policy layer, or has no room for ``spec.integrity``.
    """
    from weightguard.policy.load import read_layer

    layer = read_layer(text.encode(), origin)
    document = layer.raw
    if document.get("spec") is None:  # absent, or an empty `spec:`
        document["spec"] = {}
    spec = document["spec"]
    if isinstance(spec, dict) and spec.get("integrity") is None:
        spec["integrity"] = {}
    integrity = spec.get("integrity") if isinstance(spec, dict) else None
    if not isinstance(integrity, dict):
        raise PolicyError(f"{origin}: spec or spec.integrity is not a mapping; cannot add pins to it")
    integrity["algorithm"] = algorithm
    integrity["pinned"] = pins_of(hashed, algorithm)  # replaced, not merged: a removed file loses its pin
    leading = "".join(line for line in _leading_comments(text))
    return leading + _dump(document)


def _leading_comments(text: str) -> list[str]:
    out = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        out.append(line)
    return out


def _check(text: str, origin: str) -> None:
    """Refuse to write what would not load (PolicyError, exit 2)."""
    from weightguard.policy.load import parse_policy, read_layer

    layer = read_layer(text.encode(), origin)
    if not layer.partial:
        parse_policy(text.encode(), origin)


def lock_command(
    target: str = typer.Argument(..., help="Local file or directory, or hf://org/name@REVISION."),
    output: Path | None = OUTPUT_OPTION,
    algorithm: Algorithm | None = ALGORITHM_OPTION,
    policy: list[Path] = POLICY_OPTION,
    listing: Path | None = LISTING_OPTION,
    into: Path | None = typer.Option(
        None,
        "--into",
        help="Replace the pins of this policy file and keep the rest (rewritten atomically; comments below "
        "the leading comment block are lost). Its settings govern the lock unless --policy is given.",
    ),
    overlay: bool = typer.Option(
        False, "--overlay", help="Write only spec.integrity (a layer for a later --policy), not a whole policy."
    ),
) -> None:
    """Pin the digest of every file (signature files and git bookkeeping excepted) in a policy."""
    from weightguard.policy.load import load_policy, read_layer

    try:
        if into is not None and overlay:
            raise UsageError("--into keeps the file's own shape; --overlay cannot be combined with it")
        existing = _read_text(into) if into is not None else None
        layers = list(policy)
        if not layers and into is not None and existing is not None:
            complete = not read_layer(existing.encode(), str(into)).partial
            layers = [into] if complete else [Path("builtin:default"), into]
        loaded = load_policy(layers)
        spec = loaded.policy.spec.integrity
        chosen = algorithm.value if algorithm else spec.algorithm
        from weightguard.policy.sections.integrity import DEFAULT_ALLOWED_EXTRA

        exclude = (*DEFAULT_ALLOWED_EXTRA, *loaded.policy.spec.signatures.files)
        hashed = hash_target(target, spec, chosen, listing, exclude=exclude)
        report_findings(hashed.findings)
        if hashed.exit_code != EXIT_OK:
            err("weightguard: not locking a model with findings (see above)")
            raise typer.Exit(hashed.exit_code)
        if into is not None and existing is not None:
            text = merge_into(existing, str(into), hashed, chosen)
        else:
            text = render_lock(hashed, chosen, overlay=overlay)
        destination = output or into
        _check(text, str(destination or "lock output"))
        if destination is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_atomic(destination, text)
            err(f"weightguard: pinned {len(hashed.manifest.entries)} files in {destination}")
    except WeightguardError as exc:
        raise fail(exc) from exc


def _read_text(path: Path) -> str:
    from weightguard.policy.load import read_policy_bytes

    data = read_policy_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy file is not UTF-8 text") from exc


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("lock")(lock_command)
