"""Fixtures of the sidecar tests live in sidecar_support (importable by name from the tests)."""

from sidecar_support import *  # noqa: F403
