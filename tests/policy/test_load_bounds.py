"""Issue 16: reading a policy is bounded; a hostile policy file is a clear error (exit 2), fast."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from weightguard.errors import PolicyError
from weightguard.limits import PolicyLimits
from weightguard.policy.load import load_policy, parse_policy

HEAD = "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nmetadata:\n  name: hostile\n"
# A "billion laughs": nine levels of nine aliases each, 9**9 (387 million) strings once expanded.
ALIAS_BOMB = (
    HEAD
    + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    + "spec: {}\n"
)
RECURSIVE_ANCHOR = HEAD + "spec: &s\n  pickle:\n    mode: analyze\n  loop: *s\n"
REPO = Path(__file__).resolve().parents[2]
DEEP = HEAD + "spec:\n  x: " + "[" * 5000 + "]" * 5000 + "\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def _limit_memory() -> None:  # a regression must not take the test machine's memory with it
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


def _cli(*args: str, cwd: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "weightguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # this checkout's weightguard, from any cwd
        preexec_fn=_limit_memory,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def test_issue_16_the_alias_bomb_is_a_policy_error_naming_the_file() -> None:
    assert len(ALIAS_BOMB) < 700
    started = time.monotonic()
    with pytest.raises(PolicyError, match=r"bomb\.yaml:\d+: more than 200000 YAML nodes with aliases expanded"):
        parse_policy(ALIAS_BOMB.encode(), "bomb.yaml")
    assert time.monotonic() - started < 2


def test_issue_16_a_recursive_anchor_is_a_policy_error_not_a_recursion_error() -> None:
    with pytest.raises(PolicyError, match=r"rec\.yaml:\d+: recursive YAML anchor"):
        parse_policy(RECURSIVE_ANCHOR.encode(), "rec.yaml")


def test_issue_16_deep_nesting_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match=r"deep\.yaml:\d+: YAML nested deeper than 64 levels"):
        parse_policy(DEEP.encode(), "deep.yaml")


def test_issue_16_nesting_built_from_aliases_counts_as_deep() -> None:
    chain = "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 80))
    text = HEAD + "l0: &l0 [x]\n" + chain + "spec: {}\n"
    with pytest.raises(PolicyError, match="nested deeper than 64 levels"):
        parse_policy(text.encode(), "chain.yaml")


def test_issue_16_too_many_aliases_is_a_policy_error() -> None:
    text = HEAD + "a: &a x\nb: [" + ",".join(["*a"] * 1001) + "]\nspec: {}\n"
    with pytest.raises(PolicyError, match="more than 1000 YAML aliases"):
        parse_policy(text.encode(), "many.yaml")


def test_issue_16_a_policy_file_over_the_size_bound_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "# " + "x" * PolicyLimits().max_bytes + "\nspec: {}\n")
    with pytest.raises(PolicyError, match=r"policy\.yaml: policy file is larger than 1048576 bytes"):
        load_policy(path)


def test_modest_anchors_and_aliases_still_load() -> None:
    text = HEAD + "spec:\n  severity: &sev\n    fail_on: high\n"
    assert parse_policy(text.encode(), "ok.yaml").policy.spec.severity.fail_on.value == "high"


@pytest.mark.parametrize(("name", "text"), [("bomb", ALIAS_BOMB), ("recursive", RECURSIVE_ANCHOR)])
def test_issue_16_policy_check_and_verify_exit_2_fast_on_a_hostile_policy(tmp_path: Path, name: str, text: str) -> None:
    policy = _write(tmp_path, text)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for args in (["policy", "check", str(policy)], ["verify", str(model), "--policy", str(policy)]):
        code, output, seconds = _cli(*args, cwd=tmp_path)
        assert code == 2, output
        assert str(policy) in output
        assert "internal error" not in output
        assert seconds < 30
