"""Which targets the sidecar may verify: local paths inside the model roots, or ``hf://`` references.

A local target must lie inside one of the configured model roots by name
(``..`` collapsed lexically) before anything else happens; a path outside is
refused without its existence even being checked. Inside, it is opened from
the root's descriptor without following links (:mod:`weightguard.sidecar.confine`):
a link on the way is refused with 403. ``hf://`` references are checked for shape and passed on
(the pipeline pins and fetches them).
Not handled here: reading the files (the pipeline's sources do that).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from weightguard.sidecar.confine import TargetRefused, pin

MAX_TARGET_CHARS = 4096
_HF = re.compile(r"^hf://(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*(?:@[\w./-]+)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    # Matched by name, then opened from the root's descriptor without following any link
    # (see weightguard.sidecar.confine): a link below the root is refused, never resolved.
    with pin(target, roots) as pinned:
        return pinned.target


__all__ = ["MAX_TARGET_CHARS", "TargetRefused", "admit_target"]
