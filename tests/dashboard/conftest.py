"""The dashboard tests reuse the rich report built in ``tests/report/html_fixtures.py``.

The test tree has no ``__init__.py`` files (pytest's rootdir-relative imports), so that folder is put on
``sys.path`` here, once, instead of copying the fixture.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPORT_TESTS = str(Path(__file__).resolve().parents[1] / "report")
if REPORT_TESTS not in sys.path:
    sys.path.insert(0, REPORT_TESTS)
