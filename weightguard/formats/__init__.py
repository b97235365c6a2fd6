"""Formats: detect what bytes really are and validate their headers."""

from weightguard.formats.interface import Candidate, Confidence, Detection, FileFormat

__all__ = ["Candidate", "Confidence", "Detection", "FileFormat"]
