"""Chat templates judged by Jinja's parser and an allowlist (issue 15), with a differential check.

The differential tests render each template in a subprocess, never here: every
escape must create its marker under a plain ``jinja2.Environment`` (so the
fixture is a real attack) and be refused by :func:`check_template`; every
published template must render under ``ImmutableSandboxedEnvironment`` (as
llama-cpp-python and transformers do) and be approved.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.formats.chat_templates import BENIGN, ESCAPES, READS
from weightguard.formats.jinja_template import check_template

_RENDER = r"""
import json, sys
from datetime import datetime
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

kind, path = sys.argv[1], sys.argv[2]
source = open(path, encoding="utf-8").read()
if kind == "plain":
    env = jinja2.Environment(extensions=[loopcontrols])
else:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
context = json.loads(open(path + ".json", encoding="utf-8").read())
print(env.from_string(source).render(**context))
"""

_MESSAGES = [
    {"role": "user", "content": "Hello, what is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And import os; exec('x')? __class__"},
]
_TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add", "parameters": {"type": "object"}}}]


def _render(tmp_path: Path, kind: str, template: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "template.jinja"
    path.write_text(template, encoding="utf-8")
    context = {"messages": _MESSAGES, "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": True}
    if "tools" in template:
        context["tools"] = _TOOLS
    (tmp_path / "template.jinja.json").write_text(json.dumps(context), encoding="utf-8")
    script = tmp_path / "render.py"
    script.write_text(_RENDER, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), kind, str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_issue_15_each_escape_runs_a_command_under_plain_jinja_and_is_refused(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "marker"
    template = ESCAPES[name](f"touch {shlex.quote(str(marker))}")
    result = _render(tmp_path, "plain", template)
    assert marker.exists(), f"{name} did not run under plain Jinja: {result.stderr[-500:]}"
    verdict = check_template(template)
    assert not verdict.safe
    assert verdict.syntax_error is None, verdict.syntax_error


@pytest.mark.parametrize("name", sorted(READS))
def test_issue_15_each_format_gadget_reaches_python_internals_under_plain_jinja_and_is_refused(
    tmp_path: Path, name: str
) -> None:
    result = _render(tmp_path, "plain", READS[name])
    assert "<class 'object'>" in result.stdout, f"{name} reached nothing: {result.stderr[-500:]}"
    assert "posix" in result.stdout  # os.name, read through raise_exception.__globals__
    verdict = check_template(READS[name])
    assert not verdict.safe
    assert verdict.syntax_error is None, verdict.syntax_error


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_issue_15_published_templates_render_in_the_sandbox_and_are_approved(tmp_path: Path, name: str) -> None:
    result = _render(tmp_path, "sandboxed", BENIGN[name])
    assert result.returncode == 0, result.stderr[-800:]
    assert "<" in result.stdout or "[INST]" in result.stdout
    verdict = check_template(BENIGN[name])
    assert verdict.safe, verdict.summary()


@pytest.mark.parametrize(
    ("template", "construct"),
    [
        ("{{ x.__class__ }}", "attribute '__class__'"),
        ("{{ x.mro }}", "attribute 'mro'"),
        ("{{ f.gi_frame }}", "attribute 'gi_frame'"),
        ("{{ ''['__class__'] }}", "item '__class__'"),
        ("{{ ''['__cla' ~ 'ss__'] }}", "item key computed at render time"),
        ("{{ x|attr('y') }}", "filter 'attr'"),
        ("{% set c = n * 1 %}{% set n = '__class__' %}{{ ''[c] }}", "item key computed at render time"),
        ("{{ x|map('attr', '__class__')|list }}", "|map applying something other than a reviewed filter or test"),
        ("{{ x|selectattr('__class__')|list }}", "|selectattr reading attribute '__class__'"),
        ("{{ x|sort(attribute=k) }}", "|sort reading an attribute computed at render time"),
        ("{{ x|groupby('a.__class__') }}", "|groupby reading attribute '__class__'"),
        # issue 15 red team: map(attribute='format') obtains a bound str.format, {'strip': f} calls it as d.strip
        (
            "{% set f = ['{0.__class__}']|map(attribute='format')|first %}{% set d = {'strip': f} %}{{ d.strip(x) }}",
            "|map reading attribute 'format' (a method taken as a value)",
        ),
        ("{{ x|sort(attribute='name,__class__') }}", "|sort reading attribute '__class__'"),
        (
            "{{ x|selectattr('format', 'defined')|list }}",
            "|selectattr reading attribute 'format' (a method taken as a value)",
        ),
        ("{{ x|rejectattr('mro')|list }}", "|rejectattr reading attribute 'mro'"),
        (
            "{{ x|unique(attribute='format_map')|list }}",
            "|unique reading attribute 'format_map' (a method taken as a value)",
        ),
        ("{{ x|sum(attribute='a._b') }}", "|sum reading attribute '_b'"),
        ("{{ x|max(attribute='__class__') }}", "|max reading attribute '__class__'"),
        ("{{ x|groupby(attribute='format') }}", "|groupby reading attribute 'format' (a method taken as a value)"),
        ("{{ x|join(', ', 'a..b') }}", "|join reading attribute ''"),
        ("{{ x|map(attribute=['a']) }}", "|map reading an attribute computed at render time"),
        # any method it may not call, held as a value, could be called through an allowed name
        ("{% set d = {'strip': ''.zfill} %}{{ d.strip(99999) }}", "attribute 'zfill' taken as a value"),
        ("{% set d = {'join': x['pop']} %}{{ d.join() }}", "item 'pop' taken as a value"),
        (
            "{% set f = [x]|map(attribute='center')|first %}{{ {'strip': f}.strip(9) }}",
            "|map reading attribute 'center' (a method taken as a value)",
        ),
        ("{{ self }}", "name 'self'"),
        ("{{ joiner() }}", "call of 'joiner'"),
        ("{{ range }}", "name 'range'"),
        ("{{ range(1000000) }}", "range() of 1000000 (more than 100000)"),
        ("{% for i in range(99999 * 99999) %}{% endfor %}", "range() of 9999800001 (more than 100000)"),
        ("{{ 9 ** 9 ** 9 }}", "** (power)"),
        ("{{ 'a' * 1000 * 1000 }}", "* of a product (a string repeated beyond any limit)"),
        ("{{ '{0.__class__}'.format(x) }}", "call of method 'format'"),
        ("{{ (x|first)() }}", "call of a computed value"),
        ("{{ os() }}", "call of 'os'"),
        ("{% import 'x' as y %}", "Import (not in the allowlist)"),
        ("{% include 'x' %}", "Include (not in the allowlist)"),
        ("{% extends 'x' %}", "Extends (not in the allowlist)"),
        ("{% block b %}{% endblock %}", "Block (not in the allowlist)"),
        ("{{ x is evil }}", "test 'evil'"),
        ("{{ x|evil }}", "filter 'evil'"),
        ("{% set ns = namespace() %}{% set ns._x = 1 %}", "namespace attribute '_x'"),
        (
            "{% set raise_exception = x.format %}{{ raise_exception('{0.__class__}') }}",
            "assignment to 'raise_exception'",
        ),
        ("{% macro m() %}{% endmacro %}{% set m = x.format %}{{ m('{0}') }}", "assignment to 'm'"),
        ("{% set d = {'strip': ''.format} %}{{ d.strip('{0.__class__}') }}", "attribute 'format' taken as a value"),
        ("{% set d = dict(strip=''['format']) %}{{ d.strip('{0}') }}", "item 'format' taken as a value"),
        ("{% macro m(namespace) %}{{ namespace(1) }}{% endmacro %}", "assignment to 'namespace'"),
        ("{% for range in [x.format] %}{{ range(1) }}{% endfor %}", "assignment to 'range'"),
    ],
)
def test_constructs_outside_the_allowlist_are_refused(template: str, construct: str) -> None:
    verdict = check_template(template)
    assert construct in [issue.construct for issue in verdict.issues], verdict.summary()


@pytest.mark.parametrize(
    "template",
    [
        "{{ messages[-1]['content'] }}{{ messages[1:] }}{{ messages[::-1] }}",
        "{% for m in messages %}{{ messages[loop.index0 - 1].role }}{% endfor %}",
        "{% for i in range(messages|length) %}{{ messages[i].content }}{% endfor %}",
        "{% set ns = namespace(i=0) %}{% set ns.i = ns.i + 1 %}{{ messages[ns.i] }}",
        "{% set n = messages|length - 1 %}{{ messages[n] }}",
        "{{ tools|map(attribute='function.name')|join(', ') }}{{ messages|selectattr('role', 'equalto', 'user')|list }}",
        "{{ messages|map('trim')|list }}{{ x|sort(attribute='name') }}",
        "{% macro render(m) %}{{ m.content|trim }}{% endmacro %}{% for m in messages %}{{ render(m) }}{% endfor %}",
        "{% for m in messages %}{% if m.role == 'x' %}{% break %}{% endif %}{% continue %}{% endfor %}",
        "{% generation %}{{ messages[0].content }}{% endgeneration %}",
        "{% set d = dict(a=1) %}{{ d.items()|list }}{{ d.get('a') }}{{ ', '.join(['a']) }}",
        '{{ \'exec("import os"); __import__("os").system("x"); x.__class__; |attr\' }}',
        "{% raw %}{{ x.__class__ }}{% endraw %}",
        "{# {{ x.__class__ }} #}",
        "{% for p in tool.parameters.properties.values() %}{% if p.format is defined %}{{ p.type }}{% endif %}{% endfor %}",
        # attribute-taking filters used as published templates use them (issue 15 red team follow-up)
        "{{ messages|selectattr('role', 'equalto', 'system')|list }}{{ messages|rejectattr('role', 'eq', 'tool')|list }}",
        "{{ messages|map(attribute='content')|join('\\n') }}{{ messages|map(attribute='content')|join }}",
        "{{ (messages|selectattr('role', 'equalto', 'user')|list|last).content }}",
        "{{ tools|sort(attribute='function.name,type')|map(attribute='function')|list }}",
        "{% for g in messages|groupby('role') %}{{ g.grouper }}{{ g.list|length }}{% endfor %}",
        "{{ messages|sum(attribute='tokens', start=0) }}{{ messages|max(attribute='index') }}{{ x|unique(attribute=0)|list }}",
        "{% set d = {'strip': ''.strip} %}{{ d.strip() }}{{ schema['items'] }}{{ loop.cycle }}",
    ],
)
def test_ordinary_constructs_are_allowed(template: str) -> None:
    verdict = check_template(template)
    assert verdict.safe, verdict.summary()


def test_a_template_that_does_not_parse_is_refused_with_the_reason() -> None:
    verdict = check_template("{% for m in messages %}{{ m }}")
    assert not verdict.safe
    assert verdict.syntax_error is not None and "line 1" in verdict.syntax_error
    assert "does not parse" in verdict.summary()


@pytest.mark.parametrize(
    "template",
    [
        "{{ " + "(" * 50_000 + "1" + ")" * 50_000 + " }}",
        "{{ " + "1" * 5000 + " }}",  # past Python's int_max_str_digits: ValueError inside the lexer
    ],
)
def test_a_template_the_parser_cannot_read_is_refused_not_raised(template: str) -> None:
    verdict = check_template(template)
    assert not verdict.safe and verdict.syntax_error


_PIECES = ["{{", "}}", "{%", "%}", "{#", "#}", "(", ")", "[", "]", "|", ".", "~", "'", '"', "_", " ", "x", "1", "for",
           "in", "endfor", "if", "endif", "set", "=", ",", ":", "macro", "endmacro", "attr", "__class__", "\\"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
def test_any_text_gets_a_verdict_and_never_raises(template: str) -> None:
    verdict = check_template(template)
    assert verdict.safe or verdict.summary()
