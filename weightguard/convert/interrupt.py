"""SIGTERM and SIGINT during a conversion: stop through the clean-up path, not around it.

Python's default SIGTERM action ends the process at once, so the ``finally``
that removes the staging folder (:func:`weightguard.convert.run.convert_model`)
never runs and a ``.weightguard-staging-*`` folder is left behind (issue 16).
:func:`stop_cleanly_on_signals` turns SIGTERM (and SIGINT) into ``SystemExit``
with the shell's ``128 + signal`` status, raised in the main thread: every
``finally`` on the way out runs, and no handler of ``Exception`` (nor of
``WeightguardError``) can swallow it. A second signal while the clean-up
runs is ignored, so that the clean-up finishes (SIGKILL still ends the process;
the next run sweeps what it leaves, see :func:`weightguard.convert.publish.sweep_stale_staging`).

Not handled here: anything outside the main thread (signal handlers can only be
installed there; elsewhere the context manager does nothing).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_cleanly_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT raise ``SystemExit(128 + signum)`` once, then are ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return  # already on the way out: let the clean-up finish
        stopping = True
        name = signal.Signals(signum).name
        sys.stderr.write(f"weightguard: {name} received; cleaning up and stopping\n")
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
