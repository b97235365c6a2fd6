"""The policy file: strict parsing with errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightguard.errors import PolicyError
from weightguard.policy.load import load_builtin, load_policy, parse_policy


def test_builtin_default_policy_analyses_pickles() -> None:
    loaded = load_builtin("default")
    assert loaded.policy.spec.pickle.mode == "analyze"
    assert len(loaded.sha256) == 64


def test_builtin_strict_policy_refuses_pickle_formats() -> None:
    spec = load_builtin("strict").policy.spec
    assert spec.pickle.mode == "refuse"
    assert {f.value for f in spec.formats.refused} >= {"pickle", "pytorch-zip", "pytorch-legacy", "joblib"}


def test_shipped_policy_files_are_the_builtin_ones(repo_root: Path) -> None:
    for name in ("default", "strict"):
        shipped = (repo_root / "policies" / f"{name}.yaml").read_bytes()
        builtin = (repo_root / "weightguard" / "policy" / "builtin" / f"{name}.yaml").read_bytes()
        assert shipped == builtin, f"policies/{name}.yaml and the packaged copy differ"


def test_every_shipped_policy_validates(repo_root: Path) -> None:
    for path in sorted((repo_root / "policies").glob("*.yaml")):
        load_policy(path)


def test_no_policy_path_means_the_default_policy() -> None:
    assert load_policy(None).name == "default"


def test_unknown_key_names_file_line_and_field(write_policy) -> None:
    path = write_policy("limits:\n  max_pickle_opcodes: 10\n  bogus: 1")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert f"{path}:8: spec.limits.bogus: unknown field" in err.value.message


def test_bad_enum_value_is_an_error_with_its_line(write_policy) -> None:
    path = write_policy("pickle:\n  mode: sometimes")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert f"{path}:7: spec.pickle.mode" in err.value.message


def test_duplicate_keys_are_refused_not_collapsed(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="duplicate key 'kind'"):
        parse_policy(b"apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nkind: X\n", "p.yaml")


def test_wildcard_allowed_global_is_refused(write_policy) -> None:
    path = write_policy('pickle:\n  allowed_globals:\n    - {global: "os.*", reason: "no"}')
    with pytest.raises(PolicyError, match="exact 'module.qualname'"):
        load_policy(path)


def test_allowed_global_needs_a_reason(write_policy) -> None:
    path = write_policy('pickle:\n  allowed_globals:\n    - {global: "mylib.Config"}')
    with pytest.raises(PolicyError, match="reason"):
        load_policy(path)


def test_limits_accept_units(write_policy) -> None:
    loaded = load_policy(write_policy("limits:\n  max_file_bytes: 2GiB\n  max_header_bytes: 1MB"))
    assert int(loaded.policy.spec.limits.max_file_bytes) == 2 * 2**30
    assert int(loaded.policy.spec.limits.max_header_bytes) == 1_000_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"key: [unclosed", "not valid YAML"),
        (b"- a\n- b\n", "must be a mapping"),
        (b"apiVersion: weightguard/v2\nkind: VerificationPolicy\nmetadata: {name: x}\n", "apiVersion"),
    ],
)
def test_unusable_documents_are_policy_errors(data: bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(data, "p.yaml")


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")


def test_policy_digest_is_of_the_exact_bytes(write_policy) -> None:
    import hashlib

    path = write_policy("")
    assert load_policy(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_builtin_policies_are_named_with_a_prefix() -> None:
    assert load_policy(Path("builtin:strict")).name == "strict"
    with pytest.raises(PolicyError, match="no built-in policy"):
        load_policy(Path("builtin:lenient"))
