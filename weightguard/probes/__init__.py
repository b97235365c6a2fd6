"""The probes stage: backdoor trigger probes for Hugging Face models (extra: [probes]).

Only the interface is re-exported; run the suite through
:func:`weightguard.probes.suite.probe_directory`. The re-export is lazy (PEP 562):
every report model imports :mod:`weightguard.probes.report`, and a ``scan``
that probes nothing should not load the probe interface on the way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("weightguard.probes.interface"), name)
    globals()[name] = value
    return value
