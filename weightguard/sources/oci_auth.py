"""Registry credentials and authentication challenges for the OCI registry client.

Reads Docker-style credential files (``config.json``: ``auths`` entries with a
base64 ``auth`` value or ``username``/``password``), from a file the caller
names or from ``$DOCKER_CONFIG/config.json`` / ``~/.docker/config.json``, and
parses ``WWW-Authenticate`` challenges (RFC 7235 auth-params, as the
distribution token spec uses them). Hand-written because both are a few lines
and the libraries that do this (docker-py, oras) pull in much more.
Not handled here: credential helpers (``credsStore``, ``credHelpers``: they are
ignored, pass ``--registry-auth-file`` instead), identity tokens, and sending anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from weightguard.errors import SourceError

_MAX_CONFIG_BYTES = 1024 * 1024
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
    host: str, auth_file: Path | None = None, env: Mapping[str, str] | None = None
) -> RegistryCredentials | None:
    """The credentials for ``host`` (``name:port``) from ``auth_file`` or the Docker config, or None.

    Raises:
        SourceError: ``auth_file`` is missing, or a credentials file is unreadable or malformed.
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
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise SourceError(f"{path} has no 'auths' object", hint='expected {"auths": {"HOST:PORT": {"auth": "..."}}}')
    for key, entry in auths.items():
        if isinstance(key, str) and _host_key(key) == host.lower() and isinstance(entry, dict):
            return _entry(entry, path, host)
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


__all__ = ["RegistryCredentials", "load_credentials", "parse_challenge"]
