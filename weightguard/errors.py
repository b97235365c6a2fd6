"""The one exception hierarchy of weightguard.

An exception here means that weightguard could not do its job (unreadable file,
bad policy, a limit hit, a missing extra). Hostile or malformed *content* is
never an exception to the caller: it becomes a :class:`~weightguard.findings.Finding`.
The CLI and the sidecar catch only :class:`WeightguardError`; foreign exceptions
are wrapped at the seam where they enter.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BLOCKED = 1
EXIT_INCOMPLETE = 2


class WeightguardError(Exception):
    """Root of every error weightguard raises on purpose."""

    exit_code: int = EXIT_INCOMPLETE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """Return the message plus what the user can do next."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class UsageError(WeightguardError):
    """The command line or API was called with arguments that cannot work."""


class SourceError(WeightguardError):
    """A target could not be read or resolved (missing path, bad hf:// ref)."""


class FormatError(WeightguardError):
    """A file's format could not be processed at all."""


class PolicyError(WeightguardError):
    """The policy file is unreadable or invalid."""


class AnalysisError(WeightguardError):
    """Static analysis could not run."""


class LimitExceeded(AnalysisError):  # noqa: N818 - named after fickling's ResourceExhaustionError idea
    """A configured resource limit (bytes, opcodes, members, depth, time) was reached."""

    def __init__(self, resource: str, limit: float, actual: float | None = None) -> None:
        shown = "" if actual is None else f" (reached {actual:g})"
        super().__init__(
            f"limit exceeded: {resource} > {limit:g}{shown}",
            hint=f"raise spec.limits.{resource} in the policy if this file is trusted to be that large",
        )
        self.resource = resource
        self.limit = limit
        self.actual = actual


class IntegrityError(WeightguardError):
    """Integrity checking (hashing, manifests) could not run."""


class SignatureError(WeightguardError):
    """A signature is invalid, untrusted or could not be checked."""

    exit_code = 1


class ConversionError(WeightguardError):
    """Conversion to safetensors failed or was refused."""


class ProbeError(WeightguardError):
    """The trigger-probe suite could not run."""


class VerdictError(WeightguardError):
    """The verdict, attestation or rollout record could not be produced."""


class MissingExtraError(WeightguardError):
    """An optional dependency group is needed for this feature."""

    def __init__(self, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional extra [{extra}]",
            hint=f"pip install 'weightguard[{extra}]'",
        )
        self.extra = extra
