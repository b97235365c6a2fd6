"""weightguard: a model-weight supply-chain verifier.

Stages, in the order :mod:`weightguard.pipeline` runs them: sources (where
bytes come from) -> formats (what they are, from their bytes) -> analysis
(static, never executing anything) -> integrity and signing -> convert ->
probes -> verdict. Renderers in :mod:`weightguard.report` turn the one
:class:`~weightguard.report.model.Report` into text, JSON and SARIF.
"""

__version__ = "0.1.0"
