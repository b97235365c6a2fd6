"""Policy sections for format detection and static analysis (formats, pickle, limits, severity)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import ByteSize, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from weightguard.findings import Severity
from weightguard.formats.interface import FileFormat
from weightguard.policy.base import StrictModel

_QUALNAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*\.[A-Za-z_][\w]*$")


class FormatExemption(StrictModel):
    """Let a file weightguard cannot analyse pass, by path glob and/or format, for a reason, until a date.

    Only "not analysed" findings (an unknown binary format, a format without an
    analyzer) are lifted, and every exempted file is listed in the report with
    this reason and date; a finding about the content (a pickle global, a
    polyglot, a template) is never lifted. An expired exemption lifts nothing
    and is itself a finding (WG-POL-004).
    """

    path: Annotated[str | None, Field(description="glob over the path relative to the model folder")] = None
    format: Annotated[FileFormat | None, Field(description="detected format; 'unknown' for unrecognised bytes")] = None
    reason: Annotated[str, Field(min_length=3)]
    expires: dt.date

    @model_validator(mode="after")
    def _names_something(self) -> FormatExemption:
        if self.path is None and self.format is None:
            raise ValueError("an exemption needs a path glob, a format, or both")
        return self


class FormatsSpec(StrictModel):
    """Which formats may appear in a model.

    A format in ``refused`` is a blocking finding. A format that is in neither
    list is allowed only when ``allowed`` is empty (no allowlist given).
    ``exempt`` lets named files that cannot be analysed pass (see :class:`FormatExemption`).
    """

    allowed: list[FileFormat] = Field(default_factory=list)
    refused: list[FileFormat] = Field(default_factory=list)
    exempt: list[FormatExemption] = Field(default_factory=list)


class AllowedGlobal(StrictModel):
    """One extra pickle global the policy allows, with the reason it is safe."""

    name: Annotated[str, Field(alias="global", description="module.qualname, exact match")]
    reason: Annotated[str, Field(min_length=3)]

    @field_validator("name")
    @classmethod
    def _exact_name(cls, value: str) -> str:
        if not _QUALNAME.match(value):
            raise ValueError("must be an exact 'module.qualname' (no wildcards)")
        return value


class PickleSpec(StrictModel):
    """How pickle-based files are treated."""

    mode: Literal["refuse", "analyze"] = "analyze"
    allowed_globals: list[AllowedGlobal] = Field(default_factory=list)
    fickling_evidence: bool = True


class LimitsSpec(StrictModel):
    """Resource limits; sizes accept units (``512MiB``)."""

    max_file_bytes: ByteSize = ByteSize(256 * 2**30)
    max_header_bytes: ByteSize = ByteSize(100 * 2**20)
    max_header_values: PositiveInt = 1_000_000  # see Limits: JSON values in one safetensors header
    max_pickle_bytes: ByteSize = ByteSize(512 * 2**20)
    max_pickle_opcodes: PositiveInt = 20_000_000
    max_memo_entries: PositiveInt = 2_000_000
    max_nesting_depth: PositiveInt = 8
    max_archive_members: PositiveInt = 100_000
    max_decompressed_bytes: ByteSize = ByteSize(4 * 2**30)
    max_compression_ratio: PositiveFloat = 1100.0  # see Limits: zero-filled tensors deflate ~1030:1
    max_seconds_per_file: PositiveFloat = 120.0


class IgnoreRule(StrictModel):
    """Suppress one rule for paths matching a glob, for a reason, until a date."""

    rule: Annotated[str, Field(pattern=r"^WG-[A-Z0-9]+-\d{3}$")]
    path: str = "*"
    reason: Annotated[str, Field(min_length=3)]
    expires: dt.date


class SeveritySpec(StrictModel):
    """Which severities block, and which findings are knowingly ignored."""

    fail_on: Severity = Severity.MEDIUM
    ignores: list[IgnoreRule] = Field(default_factory=list)
