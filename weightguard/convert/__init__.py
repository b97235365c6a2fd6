"""The convert stage: approved pickle-era checkpoints to safetensors, with a proof.

Only the interface is re-exported; the implementation (``run``, ``loader``,
``writer``, ``proof``) needs torch, which lives in the ``[torch]`` extra.
"""

from weightguard.convert.interface import ConversionPlan, ConversionProof, ConvertedFile, PlannedFile

__all__ = ["ConversionPlan", "ConversionProof", "ConvertedFile", "PlannedFile"]
