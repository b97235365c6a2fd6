"""The probes stage: backdoor trigger probes for Hugging Face models (extra: [probes]).

Only the interface is re-exported; run the suite through
:func:`weightguard.probes.suite.probe_directory`.
"""

from weightguard.probes.interface import (
    Family,
    LoadedModel,
    Probe,
    ProbeContext,
    ProbeError,
    ProbeResult,
    ProbeStatus,
    Suspect,
)

__all__ = ["Family", "LoadedModel", "Probe", "ProbeContext", "ProbeError", "ProbeResult", "ProbeStatus", "Suspect"]
