"""GGUF chat templates judged by Jinja's parser (issue 15), on files from the test GGUF writer."""

from __future__ import annotations

import pytest

from tests.formats.chat_templates import BENIGN, ESCAPES
from tests.formats.test_gguf import ARRAY, STRING, Writer, _model, _scan
from weightguard.formats import header_codes as codes


def _with_template(template: str, key: str = "tokenizer.chat_template") -> bytes:
    return _model().add_kv(key, STRING, template).build()


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_issue_15_every_sandbox_escape_in_a_gguf_template_is_critical(name: str) -> None:
    findings = _scan(_with_template(ESCAPES[name]("touch /nonexistent/marker"), "tokenizer.chat_template.tool_use"))
    assert [f.code for f in findings] == [codes.GGUF_TEMPLATE_INJECTION.code]
    assert findings[0].evidence["key"] == "tokenizer.chat_template.tool_use"
    assert findings[0].evidence["constructs"]


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_issue_15_published_chat_templates_in_a_gguf_are_approved(name: str) -> None:
    w = Writer().add_kv("general.architecture", STRING, "llama").add_kv("tokenizer.chat_template", STRING, BENIGN[name])
    assert _scan(w.build()) == []


def test_issue_15_a_system_prompt_mentioning_exec_is_not_a_finding() -> None:
    template = "{{ '<|system|>You can exec Python: import os; os.system() and x.__class__ are fine words.' }}"
    assert _scan(Writer().add_kv("tokenizer.chat_template", STRING, template).build()) == []


def test_issue_15_a_template_that_does_not_parse_is_refused() -> None:
    findings = _scan(Writer().add_kv("tokenizer.chat_template", STRING, "{% for m in messages %}{{ m }}").build())
    assert [f.code for f in findings] == [codes.CFG_TEMPLATE_UNPARSABLE.code]
    assert "does not parse" in findings[0].message


def test_issue_15_every_copy_of_a_repeated_template_key_is_checked() -> None:
    w = Writer().add_kv("tokenizer.chat_template", STRING, "{{ lipsum.__globals__ }}")
    w.add_kv("tokenizer.chat_template", STRING, "{{ messages[0].content }}")
    assert codes.GGUF_TEMPLATE_INJECTION.code in {f.code for f in _scan(w.build())}


def test_issue_15_templates_in_an_array_are_checked_one_by_one() -> None:
    w = Writer().add_kv("tokenizer.chat_templates", ARRAY, (STRING, [BENIGN["chatml"], "{{ ''['__cla'~'ss__'] }}"]))
    findings = _scan(w.build())
    assert [f.evidence["key"] for f in findings] == ["tokenizer.chat_templates[1]"]
