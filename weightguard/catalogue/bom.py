"""verify-many ``--format cyclonedx``: one CycloneDX ML-BOM for the whole catalogue.

Each model is a ``machine-learning-model`` component with its files nested
in it, built from the model's own report exactly as ``verify --format
cyclonedx`` builds it (:mod:`weightguard.report.cyclonedx`), so a model reads
the same in both. A model that could not be judged is listed as incomplete
with its reason and no files. The BOM's ``metadata`` names no single
component: the catalogue is not one thing that was built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weightguard.catalogue.interface import CatalogueSummary
from weightguard.catalogue.report import CatalogueReport
from weightguard.report.cyclonedx import model_components, render_models_cyclonedx, unjudged_component

if TYPE_CHECKING:
    from cyclonedx.model.component import Component


def render_catalogue_cyclonedx(summary: CatalogueSummary, report: CatalogueReport) -> str:
    """The catalogue as a CycloneDX 1.6 JSON ML-BOM.

    Raises:
        CatalogueError: a cached report is damaged (as for the SARIF rendering).
    """
    judged: list[tuple[Component, list[Component]]] = []
    for i, outcome in enumerate(summary.models):
        ref = f"model-{i}"
        full = outcome.report
        if full is None:
            judged.append((unjudged_component(outcome.entry.target, outcome.error or outcome.verdict, ref), []))
        else:
            judged.append(model_components(full, ref))
    return render_models_cyclonedx(judged, report.tool, report.generated_at, report.model_dump_json())
