"""Which targets the sidecar may verify: local paths inside the model roots, or ``hf://`` references.

A local target is resolved (symlinks followed, ``..`` collapsed) and must lie
inside one of the configured model roots before anything else happens; a path
outside is refused without its existence even being checked, and nothing is
ever read from it. ``hf://`` references are checked for shape and passed on
(the pipeline pins and fetches them).
Not handled here: reading the files (the pipeline's sources do that).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from weightguard.errors import SourceError

MAX_TARGET_CHARS = 4096
_HF = re.compile(r"^hf://(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*(?:@[\w./-]+)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TargetRefused(SourceError):  # noqa: N818 - a decision about the request
    """The target may not be verified by this sidecar; ``status`` is the HTTP answer (403 or 422)."""

    def __init__(self, message: str, status: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def admit_target(target: str, roots: Sequence[Path]) -> str:
    """Return the canonical form of ``target`` if this sidecar may verify it.

    Raises:
        TargetRefused: 422 for a malformed or missing target, 403 for a path outside every model root.
    """
    if not target or len(target) > MAX_TARGET_CHARS or _CONTROL.search(target):
        raise TargetRefused("target must be 1 to 4096 printable characters", 422)
    if target.startswith("hf://"):
        if not _HF.match(target) or ".." in target:
            raise TargetRefused(f"malformed Hugging Face target {target!r}", 422, hint="use hf://org/name@REVISION")
        return target
    if "://" in target:
        raise TargetRefused(
            f"unsupported target scheme in {target!r}", 422, hint="give a local path inside a model root or hf://..."
        )
    path = Path(target)
    if not path.is_absolute():
        raise TargetRefused(f"local target {target!r} must be an absolute path", 422)
    resolved = path.resolve(strict=False)
    if not any(resolved.is_relative_to(root.resolve(strict=False)) for root in roots):
        raise TargetRefused(
            f"{target} is outside the sidecar's model roots",
            403,
            hint="configure --model-root / WEIGHTGUARD_MODEL_ROOTS",
        )
    if not resolved.exists():
        raise TargetRefused(f"{target} does not exist", 422)
    return str(resolved)


__all__ = ["MAX_TARGET_CHARS", "TargetRefused", "admit_target"]
