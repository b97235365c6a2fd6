"""Where weightguard keeps its state when neither an option nor the policy names a place.

The rollout record and the results cache used to be ``sqlite:///.weightguard/rollout.db``
relative to the working directory, so ``cd /tmp && weightguard status M`` looked in a
different, empty record (issue 18). They now live in the user's state directory, as the
XDG Base Directory specification defines it: ``$XDG_STATE_HOME/weightguard``, else
``~/.local/state/weightguard``; an explicit ``--database`` or ``spec.rollout.database``
still wins. XDG is used on every platform, not platformdirs' per-OS folders, so that CI
containers and laptops behave alike and one environment variable moves it (tests set
``XDG_STATE_HOME`` to a temporary folder). The environment is passed in, so this is pure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STATE_ENV = "XDG_STATE_HOME"
DATABASE_FILE = "rollout.db"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder for weightguard's state: ``$XDG_STATE_HOME/weightguard`` or ``~/.local/state/weightguard``.

    A relative or empty ``XDG_STATE_HOME`` is ignored, as the specification says.
    """
    env = os.environ if env is None else env
    base = Path(env.get(STATE_ENV) or ".")
    if not base.is_absolute():
        base = Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return base / "weightguard"


def default_database_url(env: Mapping[str, str] | None = None) -> str:
    """The rollout record's (and results cache's) URL in the state directory."""
    return f"sqlite:///{(state_dir(env) / DATABASE_FILE).as_posix()}"


def database_url(given: str | None, configured: str | None, env: Mapping[str, str] | None = None) -> str:
    """The URL to use: the option given, else the policy's ``spec.rollout.database``, else the state directory."""
    return given or configured or default_database_url(env)
