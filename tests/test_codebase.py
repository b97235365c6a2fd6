"""Rules the code base keeps, checked mechanically (see STYLE.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import weightguard.errors as errors_module

PACKAGE = Path(__file__).resolve().parents[1] / "weightguard"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))

# Modules allowed past 500 lines, with the reason.
LONG_MODULES: dict[str, str] = {}

_ERROR_NAMES = {
    name for name, obj in vars(errors_module).items() if isinstance(obj, type) and issubclass(obj, Exception)
}
# Exceptions that belong to a framework protocol rather than to weightguard's errors.
_PROTOCOL_RAISES = {
    "typer.Exit",  # how a Typer command sets its exit code
    "Exit",
    "SystemExit",
    "StopIteration",
    "NotImplementedError",
    "AssertionError",  # assert_never-style impossibilities
    "AttributeError",  # a module's lazy __getattr__ (PEP 562) must raise it for a name it does not have
    "HTTPException",  # FastAPI's way to answer a request with a 4xx status
    "VerificationError",  # sigstore's VerificationPolicy protocol: a policy object must raise sigstore's error
    # httpx's BaseTransport protocol (sources/oci_transport.py): the client above maps these to FetchError
    "httpx.ConnectError",
    "httpx.ConnectTimeout",
    "httpx.ReadTimeout",
    "httpx.RemoteProtocolError",
}
_VALIDATOR_DECORATORS = {"field_validator", "model_validator", "validator", "root_validator"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        return _name(node.func)
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _is_validator(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_name(d).split(".")[-1] in _VALIDATOR_DECORATORS for d in func.decorator_list)


def _package_error_classes() -> set[str]:
    # Any class in the package derived (transitively) from weightguard's errors is a weightguard error too.
    classes = [
        node for path in SOURCES for node in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(node, ast.ClassDef)
    ]
    known = set(_ERROR_NAMES)
    changed = True
    while changed:
        changed = False
        for node in classes:
            if node.name not in known and any(_name(b).split(".")[-1] in known for b in node.bases):
                known.add(node.name)
                changed = True
    return known


def test_every_raise_in_the_package_raises_a_weightguard_error() -> None:
    offenders = []
    allowed = _package_error_classes()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        validators = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and _is_validator(n)]
        in_validator = {id(r) for v in validators for r in ast.walk(v) if isinstance(r, ast.Raise)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None or id(node) in in_validator:
                continue
            name = _name(node.exc)
            if not name or name[0].islower() and "." not in name:
                continue  # re-raising a caught exception object
            if name.split(".")[-1] in allowed or name in _PROTOCOL_RAISES:
                continue
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: raise {name}")
    assert offenders == []


def test_no_module_is_over_500_lines_without_a_reason() -> None:
    long = [
        f"{p.relative_to(PACKAGE.parent)} ({n} lines)"
        for p in SOURCES
        if (n := len(p.read_text().splitlines())) > 500 and p.relative_to(PACKAGE).as_posix() not in LONG_MODULES
    ]
    assert long == []


def test_broad_except_only_in_the_cli_sidecar_or_a_documented_seam() -> None:
    offenders = []
    for path in SOURCES:
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("cli/", "sidecar/")):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"except\s*(\(?\s*BaseException|\(?\s*Exception\b|:)", line) and "noqa: BLE001" not in line:
                offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert offenders == []


def test_format_detection_never_looks_at_file_names() -> None:
    offenders = []
    for path in sorted((PACKAGE / "formats").glob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.suffix\b|\.endswith\(", line):
                offenders.append(f"formats/{path.name}:{lineno}: {line.strip()}")
    assert offenders == []


def test_the_package_never_deserialises_untrusted_data_unsafely() -> None:
    # The converter loads with weights_only=True only; nothing else may load pickles at all.
    forbidden = re.compile(
        r"\bpickle\.loads?\(|\bcPickle\.|\bjoblib\.load\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False|"
        r"\byaml\.load\(|(?<![\w.])eval\(|(?<![\w.])exec\(|\bmarshal\.loads?\("
    )
    offenders = []
    for path in SOURCES:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if forbidden.search(code):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_the_package_never_sets_the_process_umask() -> None:
    # Reading the umask means setting it, and the sidecar writes files from several threads:
    # a file another thread created meanwhile would get the wrong mode.
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{lineno}: {line.strip()}"
        for path in SOURCES
        for lineno, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bumask\(", line.split("#", 1)[0])
    ]
    assert offenders == []


def test_every_stage_package_has_an_interface_module() -> None:
    for stage in ("sources", "formats", "analysis"):
        assert (PACKAGE / stage / "interface.py").exists(), stage
