"""The seam between the sidecar and the verification pipeline.

The sidecar never calls the pipeline directly: it is given a :class:`Verifier`,
a callable ``(target, policy_name) -> Report``. :class:`PipelineVerifier` is
the real one (``weightguard.pipeline.verify`` under a named, preloaded
policy); tests and embedders pass their own.
Not handled here: which targets are allowed (:mod:`weightguard.sidecar.targets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from weightguard.errors import UsageError
from weightguard.policy.load import LoadedPolicy, load_policy
from weightguard.report.model import Report
from weightguard.sidecar.settings import SidecarSettings

DEFAULT_POLICY = "default"


class Verifier(Protocol):
    """Verifies one target under one named policy and returns the judged report."""

    def __call__(self, target: str, policy_name: str) -> Report:
        """Run the verification.

        Raises:
            WeightguardError: the verification could not be done (the job fails).
        """
        ...


def load_policies(settings: SidecarSettings) -> dict[str, LoadedPolicy]:
    """Load the default policy and every named one, once, at start-up.

    Raises:
        PolicyError: a policy is missing or invalid.
        UsageError: a named policy tries to redefine ``default``.
    """
    if DEFAULT_POLICY in settings.policies:
        raise UsageError("the policy name 'default' is reserved for --policy / WEIGHTGUARD_POLICY")
    loaded = {DEFAULT_POLICY: load_policy(_layers(settings.policy))}
    for name, location in settings.policies.items():
        loaded[name] = load_policy(_layers(location))
    return loaded


def _layers(location: str | list[str]) -> list[Path]:
    """One policy, or its layers in order (as repeated ``--policy`` gives them)."""
    return [Path(location)] if isinstance(location, str) else [Path(p) for p in location]


class PipelineVerifier:
    """The real verifier: :func:`weightguard.pipeline.verify` under preloaded policies."""

    def __init__(self, policies: Mapping[str, LoadedPolicy]) -> None:
        """Keep the policies a job may name."""
        self.policies = dict(policies)

    def __call__(self, target: str, policy_name: str) -> Report:
        """Verify ``target``.

        Raises:
            UsageError: ``policy_name`` is not configured.
            WeightguardError: the pipeline could not judge the target.
        """
        from weightguard.pipeline import verify  # noqa: PLC0415 - keeps `create_app` light to import

        loaded = self.policies.get(policy_name)
        if loaded is None:
            raise UsageError(f"no policy named {policy_name!r} is configured")
        return verify(target, loaded)


__all__ = ["DEFAULT_POLICY", "PipelineVerifier", "Verifier", "load_policies"]
