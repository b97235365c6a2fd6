"""issue 17: Docker credential helpers (``credHelpers`` / ``credsStore``), asked by the real protocol.

Each test writes a small ``docker-credential-<name>`` program into a folder on ``PATH``: it is
run with ``get``, reads the registry host on stdin and answers JSON on stdout, exactly what
docker-credential-pass, -secretservice or -ecr-login do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from test_oci_registry import PASSWORD, SAMPLES, USER, Registry, _pull, push_model

from weightguard.errors import SourceError
from weightguard.sources.oci_auth import RegistryCredentials, load_credentials

HELPER = """#!{python}
import json, sys, time

host = sys.stdin.read()
with open({log!r}, "a") as log:
    log.write(json.dumps([sys.argv[1:], host]) + "\\n")
behaviour = {behaviour!r}
if behaviour == "hang":
    time.sleep(60)
if behaviour == "fail":
    print("keychain is locked", file=sys.stderr)
    sys.exit(3)
if behaviour == "token":
    print(json.dumps({{"ServerURL": host, "Username": "<token>", "Secret": "refresh"}}))
    sys.exit(0)
known = {known!r}
if host not in known:
    print("credentials not found in native keychain")
    sys.exit(1)
print(json.dumps({{"ServerURL": host, "Username": known[host][0], "Secret": known[host][1]}}))
"""


def helper(
    tmp_path: Path, name: str, known: dict[str, tuple[str, str]], behaviour: str = ""
) -> tuple[dict[str, str], Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / f"{name}.log"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / f"docker-credential-{name}"
    program.write_text(HELPER.format(python=sys.executable, log=str(log), behaviour=behaviour, known=known))
    program.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "DOCKER_CONFIG": str(tmp_path)}, log


def config(tmp_path: Path, body: dict[str, object]) -> None:
    (tmp_path / "config.json").write_text(json.dumps(body))


def test_cred_helpers_name_the_program_that_is_asked_with_the_host_on_stdin(tmp_path: Path) -> None:
    env, log = helper(tmp_path, "fake", {"reg.test:5000": ("robot", "pa55")})
    config(tmp_path, {"credHelpers": {"reg.test:5000": "fake"}})
    assert load_credentials("reg.test:5000", env=env) == RegistryCredentials("robot", "pa55")
    assert json.loads(log.read_text().splitlines()[0]) == [["get"], "reg.test:5000"]
    # Another registry is not sent to that helper at all (no credsStore, no auths).
    assert load_credentials("other:5000", env=env) is None
    assert len(log.read_text().splitlines()) == 1


def test_creds_store_is_asked_for_hosts_without_a_real_auths_entry(tmp_path: Path) -> None:
    env, _ = helper(tmp_path, "store", {"reg.test:5000": ("alice", "from-store")})
    config(
        tmp_path,
        {"credsStore": "store", "auths": {"reg.test:5000": {}, "plain:5000": {"username": "bob", "password": "pw"}}},
    )
    assert load_credentials("reg.test:5000", env=env) == RegistryCredentials("alice", "from-store")
    assert load_credentials("plain:5000", env=env) == RegistryCredentials("bob", "pw")
    assert load_credentials("unknown:5000", env=env) is None


@pytest.mark.parametrize(
    ("behaviour", "timeout", "message"),
    [
        ("fail", 60.0, "docker-credential-fake failed for reg.test:5000: keychain is locked"),
        ("token", 60.0, "identity token"),
        ("hang", 1.0, "did not answer in 1 s"),
    ],
)
def test_a_helper_that_fails_hangs_or_holds_a_token_is_a_clear_error(
    tmp_path: Path, behaviour: str, timeout: float, message: str
) -> None:
    env, _ = helper(tmp_path, "fake", {}, behaviour)
    config(tmp_path, {"credHelpers": {"reg.test:5000": "fake"}})
    with pytest.raises(SourceError, match=message):
        load_credentials("reg.test:5000", env=env, helper_timeout_s=timeout)


def test_a_helper_missing_from_path_or_misnamed_is_a_clear_error(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty"), "DOCKER_CONFIG": str(tmp_path)}
    config(tmp_path, {"credHelpers": {"reg.test:5000": "absent"}})
    with pytest.raises(SourceError, match="docker-credential-absent .* is not on PATH"):
        load_credentials("reg.test:5000", env=env)
    config(tmp_path, {"credsStore": "../../bin/sh"})
    with pytest.raises(SourceError, match="malformed credential helper"):
        load_credentials("reg.test:5000", env=env)


def test_a_pull_from_the_real_registry_uses_the_helper_s_credentials(
    htpasswd_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    home = tmp_path / "docker"
    home.mkdir()
    env, log = helper(home, "fake", {registry.host: (USER, PASSWORD)})
    config(home, {"credHelpers": {registry.host: "fake"}})
    monkeypatch.setenv("PATH", env["PATH"] + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("DOCKER_CONFIG", env["DOCKER_CONFIG"])
    _, pulled = _pull(
        f"oci://{registry.host}/team/model@{digest}", tmp_path / "pulled", insecure_registries=[registry.host]
    )
    assert pulled == digest and log.read_text().count(registry.host) == 1
