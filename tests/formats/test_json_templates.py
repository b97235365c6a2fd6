"""Chat templates in tokenizer configs and ``*.jinja`` files, judged by the Jinja allowlist (issue 15)."""

from __future__ import annotations

import json

import pytest

from tests.formats.chat_templates import BENIGN, ESCAPES
from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.findings import Finding
from weightguard.formats import header_codes as codes
from weightguard.formats.json_text import JsonAnalyzer
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource


def _scan(data: bytes, where: Location) -> list[Finding]:
    ctx = ScanContext(limits=Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))
    return list(JsonAnalyzer().analyze(BytesSource(data), where, ctx))


def _config(chat_template: object) -> list[Finding]:
    data = json.dumps({"tokenizer_class": "LlamaTokenizerFast", "chat_template": chat_template}).encode()
    return _scan(data, Location("tokenizer_config.json"))


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_issue_15_published_templates_in_a_tokenizer_config_are_approved(name: str) -> None:
    assert _config(BENIGN[name]) == []


def test_named_templates_are_approved_when_each_is() -> None:
    assert (
        _config([{"name": "default", "template": BENIGN["chatml"]}, {"name": "rag", "template": BENIGN["phi3"]}]) == []
    )


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_issue_15_every_escape_in_a_tokenizer_config_is_critical(name: str) -> None:
    findings = _config(
        [{"name": "default", "template": BENIGN["chatml"]}, {"name": "x", "template": ESCAPES[name]("true")}]
    )
    assert [(f.code, f.evidence["key"]) for f in findings] == [(codes.CFG_TEMPLATE_INJECTION.code, "chat_template[1]")]


@pytest.mark.parametrize("value", [42, {"template": "x"}, [{"name": "x"}], ["{{ x }}"]])
def test_a_chat_template_of_another_shape_is_refused(value: object) -> None:
    assert [f.code for f in _config(value)] == [codes.CFG_TEMPLATE_UNPARSABLE.code]


def test_a_chat_template_that_does_not_parse_is_refused() -> None:
    assert [f.code for f in _config("{% if x %}")] == [codes.CFG_TEMPLATE_UNPARSABLE.code]


def test_a_null_chat_template_is_no_template() -> None:
    assert _config(None) == []


def test_issue_15_a_chat_template_jinja_file_is_judged_by_its_loader_name() -> None:
    where = Location("repo.zip", ("additional_chat_templates/tool_use.jinja",))
    assert [f.code for f in _scan(ESCAPES["attr filter"]("true").encode(), where)] == [
        codes.CFG_TEMPLATE_INJECTION.code
    ]
    assert _scan(BENIGN["llama3.1-tools"].encode(), Location("chat_template.jinja")) == []
    assert [f.code for f in _scan(b"\xff{{", Location("chat_template.jinja"))] == [codes.CFG_TEMPLATE_UNPARSABLE.code]


def test_other_text_mentioning_jinja_escapes_is_not_a_template() -> None:
    assert _scan(b"Never write {{ x.__class__ }} in a template.\n", Location("README.md")) == []
