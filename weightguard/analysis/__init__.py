"""Analysis: static analysis of model files, never executing them."""

from weightguard.analysis.interface import Analyzer, Location, PickleSettings, ScanContext

__all__ = ["Analyzer", "Location", "PickleSettings", "ScanContext"]
