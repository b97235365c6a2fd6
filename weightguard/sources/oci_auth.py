"""Registry credentials and authentication challenges for the OCI registry client.

Reads Docker-style credential files (``config.json``: ``auths`` entries with a
base64 ``auth`` value or ``username``/``password``), from a file the caller
names or from ``$DOCKER_CONFIG/config.json`` / ``~/.docker/config.json``, and
parses ``WWW-Authenticate`` challenges (RFC 7235 auth-params, as the
distribution token spec uses them). Hand-written because both are a few lines
and the libraries that do this (docker-py, oras) pull in much more.

Credential helpers are asked as Docker asks them: ``credHelpers[host]``, else
``credsStore`` when ``auths`` has no entry for the host (Docker's own order, except that
a real ``auths`` entry is not shadowed by a store), names a ``docker-credential-<name>``
program found on ``PATH``; a missing store program means no credentials;
it is run with the argument ``get`` and the registry host on stdin, and answers
``{"Username": …, "Secret": …}`` on stdout. It runs without a shell, under a
time limit, its answer capped; "credentials not found" means none, any other
failure is a clear error.
Not handled here: identity tokens (a helper's ``<token>`` user; refused with a
hint), and sending anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from weightguard.errors import SourceError

_MAX_CONFIG_BYTES = 1024 * 1024
_HELPER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HELPER_TIMEOUT_S = 30.0  # a keychain prompt may wait for a person, but not for ever
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """A user name and password (or robot token) for one registry."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The ``Authorization`` header value for HTTP Basic."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def _host_key(key: str) -> str:
    # auths keys may be "host:port", "https://host:port" or "https://index.docker.io/v1/".
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0].lower()


def load_credentials(
    host: str,
    auth_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    helper_timeout_s: float = HELPER_TIMEOUT_S,
) -> RegistryCredentials | None:
    """The credentials for ``host`` (``name:port``) from ``auth_file`` or the Docker config, or None.

    Raises:
        SourceError: ``auth_file`` is missing, a credentials file is unreadable or malformed, or a
            credential helper is missing, fails or times out.
    """
    env = os.environ if env is None else env
    if auth_file is None:
        folder = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
        path = folder / "config.json"
        if not path.is_file():
            return None
    else:
        path = auth_file
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
        if len(raw) > _MAX_CONFIG_BYTES:
            raise SourceError(f"{path} is over {_MAX_CONFIG_BYTES} bytes")
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read registry credentials from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path} is not a JSON object")
    helpers, store = data.get("credHelpers"), data.get("credsStore")
    helper: object = None
    for key, value in helpers.items() if isinstance(helpers, dict) else ():
        if _host_key(str(key)) == host.lower():
            helper = value
    if helper is not None:
        return run_helper(helper, host, env, helper_timeout_s, path, required=True)
    auths = data.get("auths", {} if store is not None or helpers is not None else None)
    if not isinstance(auths, dict):
        raise SourceError(f"{path} has no 'auths' object", hint='expected {"auths": {"HOST:PORT": {"auth": "..."}}}')
    for key, entry in auths.items():
        if isinstance(key, str) and _host_key(key) == host.lower() and isinstance(entry, dict) and entry:
            return _entry(entry, path, host)  # an empty entry is the placeholder Docker leaves beside credsStore
    if store is not None:
        # Not required: a config copied from a laptop often names a store ("desktop") that is not installed here.
        return run_helper(store, host, env, helper_timeout_s, path, required=False)
    return None


def _entry(entry: dict[str, object], path: Path, host: str) -> RegistryCredentials:
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return RegistryCredentials(username, password)
    auth = entry.get("auth")
    if isinstance(auth, str):
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, sep, secret = decoded.partition(":")
        if sep and user:
            return RegistryCredentials(user, secret)
    raise SourceError(f"the credentials for {host} in {path} are malformed (expected base64 'user:password')")


def run_helper(
    name: object, host: str, env: Mapping[str, str], timeout_s: float, config: Path, *, required: bool
) -> RegistryCredentials | None:
    """Ask ``docker-credential-<name> get`` for ``host``'s credentials; None when it has none (or, unless ``required``, is not installed).

    Raises:
        SourceError: the helper is misnamed, missing (when ``required``), fails, times out or answers something unusable.
    """
    if not isinstance(name, str) or not _HELPER_NAME.match(name):
        raise SourceError(f"{config} names a malformed credential helper {name!r}")
    program = shutil.which(f"docker-credential-{name}", path=env.get("PATH"))
    if program is None and not required:
        return None
    if program is None:
        raise SourceError(
            f"the credential helper docker-credential-{name} named in {config} is not on PATH",
            hint="install it, or pass --registry-auth-file with an 'auths' entry for this registry",
        )
    try:
        done = subprocess.run(  # noqa: S603 - a program the user's Docker config names, no shell
            [program, "get"], input=host.encode(), capture_output=True, timeout=timeout_s, env=dict(env), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"the credential helper docker-credential-{name} did not answer in {timeout_s:g} s") from exc
    except OSError as exc:
        raise SourceError(f"cannot run the credential helper {program}: {exc.strerror or exc}") from exc
    said = done.stdout[:_MAX_CONFIG_BYTES]
    if done.returncode != 0:
        if b"credentials not found" in said.lower():
            return None
        message = (said or done.stderr[:_MAX_CONFIG_BYTES]).decode("utf-8", "replace").strip()[:300]
        raise SourceError(f"the credential helper docker-credential-{name} failed for {host}: {message}")
    try:
        answer = json.loads(said)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"the credential helper docker-credential-{name} answered something unusable") from exc
    if not isinstance(username, str) or not isinstance(secret, str) or not username:
        raise SourceError(f"the credential helper docker-credential-{name} answered without a user name")
    if username == "<token>":
        raise SourceError(
            f"the credential helper docker-credential-{name} holds an identity token for {host}, which is not supported",
            hint="pass --registry-auth-file with a user name and password or robot token",
        )
    return RegistryCredentials(username, secret)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split a ``WWW-Authenticate`` value into its scheme (lower case) and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return scheme.lower(), params


__all__ = ["HELPER_TIMEOUT_S", "RegistryCredentials", "load_credentials", "parse_challenge", "run_helper"]
