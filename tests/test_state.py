"""State lives in the user's state directory, not the working directory (issue 18).

``cd /tmp && weightguard status M`` used to open a new, empty rollout record under /tmp;
now every command finds the same record wherever it runs, unless an option or the policy
names another one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from weightguard.state import database_url, default_database_url, state_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"}, "/x/state/weightguard"),
        ({"HOME": "/home/u"}, "/home/u/.local/state/weightguard"),
        ({"XDG_STATE_HOME": "", "HOME": "/home/u"}, "/home/u/.local/state/weightguard"),
        ({"XDG_STATE_HOME": "relative/state", "HOME": "/home/u"}, "/home/u/.local/state/weightguard"),
    ],
)
def test_the_state_directory_follows_xdg(env: dict[str, str], expected: str) -> None:
    assert state_dir(env) == Path(expected)


def test_an_option_beats_the_policy_which_beats_the_state_directory() -> None:
    env = {"XDG_STATE_HOME": "/x/state"}
    assert default_database_url(env) == "sqlite:////x/state/weightguard/rollout.db"
    assert database_url("sqlite:///given.db", "sqlite:///policy.db", env) == "sqlite:///given.db"
    assert database_url(None, "sqlite:///policy.db", env) == "sqlite:///policy.db"
    assert database_url(None, None, env) == default_database_url(env)


def _cli(*args: str, cwd: Path, state: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "XDG_STATE_HOME": str(state), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "weightguard", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
        check=False,
    )


def test_a_model_promoted_in_one_folder_is_found_from_another(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(REPO / "sample_models" / "approved", model)
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "k.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    state = tmp_path / "state"
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    att = str(tmp_path / "m.att.json")
    verified = _cli("verify", str(model), "--attest", str(tmp_path / "k.pem"), "--attestation", att, cwd=here, state=state)
    assert verified.returncode == 0, verified.stderr
    promote = ("promote", str(model), "--stage", "staging", "--attestation", att, "--public-key", str(tmp_path / "k.pub"))
    promoted = _cli(*promote, cwd=here, state=state)
    assert promoted.returncode == 0, promoted.stderr

    status = _cli("status", str(model), cwd=elsewhere, state=state)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["stage"] == "staging"
    assert body["database"] == f"sqlite:///{state.as_posix()}/weightguard/rollout.db"
    assert f"state: {body['database']}" in status.stderr
    assert (state / "weightguard" / "rollout.db").is_file()
    assert not (here / ".weightguard").exists() and not (elsewhere / ".weightguard").exists()


def test_the_policys_explicit_database_is_used_as_written(tmp_path: Path, write_policy) -> None:
    model = tmp_path / "model"
    shutil.copytree(REPO / "sample_models" / "approved", model)
    policy = write_policy(f"rollout:\n  database: sqlite:///{tmp_path}/team.db")
    status = _cli("status", str(model), "--policy", str(policy), cwd=tmp_path, state=tmp_path / "state")
    assert status.returncode == 1  # never recorded
    assert json.loads(status.stdout)["database"] == f"sqlite:///{tmp_path}/team.db"
    assert not (tmp_path / "state").exists()
