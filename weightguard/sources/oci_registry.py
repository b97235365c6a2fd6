"""Pulling model artifacts from OCI registries (Distribution API v2) by digest, then unpacking them safely.

:class:`RegistryClient` speaks the OCI Distribution spec over HTTPS: GET/HEAD of
manifests (OCI manifest and index, Docker v2 schema 2 manifest and manifest
list) and GET of blobs, with HTTP Basic, the registry token flow
(``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` → GET the realm with
Basic credentials → token), or a ready ``Authorization`` value (Harbor's
``Basic …`` / ``Bearer …``). TLS uses the system's default trust or a CA bundle;
plain HTTP only for a registry the caller names as insecure. 429 and 5xx
answers are retried a bounded number of times with exponential backoff
(``Retry-After`` honoured up to a cap); redirects to blob storage are followed
(httpx drops the ``Authorization`` header when a redirect leaves the origin).
Every manifest and blob is checked against its digest while it streams and
capped in size; blobs are unpacked as they arrive, in one pass, by the shared
rules of :mod:`weightguard.sources.oci_unpack`, and a blob that does not match
its digest fails the whole pull (:mod:`weightguard.sources.oci_stream`); ModelPack ``.raw``
layers are fetched in parallel (:mod:`weightguard.sources.oci_blobs`). An index is narrowed to
its one model (or platform-less) manifest, else the pull fails.

Turning ``oci://`` targets into folders, and the sidecar's fetcher, are in
:mod:`weightguard.sources.oci_target`.

httpx is used (a core dependency for this reason: it is small, pure Python,
and gives streaming, timeouts, proxies from the environment and safe
redirects); the Distribution API itself is a handful of requests, so no OCI
library (oras, docker) is needed. GET answers travel through
:mod:`weightguard.sources.oci_transport` (``http.client`` under httpx's logic), which
receives a blob for less than half of httpx's own CPU cost, unless a proxy is configured.
:meth:`RegistryClient.request` also carries the uploads of
:mod:`weightguard.sources.oci_push` (``push=True`` asks for ``pull,push`` scope).
Not handled here: building what is pushed, schema 1 manifests, cosign/notation signatures,
credential helpers, and deciding anything about the files.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import ssl
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import httpx

from weightguard.sources.oci_auth import RegistryCredentials, parse_challenge
from weightguard.sources.oci_blobs import unpack_parallel
from weightguard.sources.oci_stream import ResponseStream
from weightguard.sources.oci_transport import StdlibGetTransport
from weightguard.sources.oci_unpack import (
    CHUNK,
    DIGEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    FetchedArtifact,
    FetchError,
    FetchLimits,
    HashingReader,
)

MODEL_ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
ACCEPT = ", ".join(sorted(MANIFEST_TYPES | INDEX_TYPES))
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_TOKEN_BYTES = 1024 * 1024
_MAX_RETRY_AFTER_S = 30.0
_DEFAULT_LIMITS = FetchLimits()


@dataclass(frozen=True, slots=True)
class OciReference:
    """A parsed ``oci://`` target: registry host, repository, and a digest or (when allowed) a tag."""

    host: str
    repository: str
    digest: str | None
    tag: str | None


def parse_oci_uri(uri: str) -> OciReference:
    """Split ``oci://HOST[:PORT]/REPO@sha256:HEX`` (or ``…/REPO:TAG``).

    Raises:
        FetchError: the URI is malformed.
    """
    if not uri.startswith("oci://"):
        raise FetchError(f"not an oci:// target: {uri!r}")
    host, _, rest = uri[len("oci://") :].partition("/")
    digest = tag = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not DIGEST.match(digest):
            raise FetchError(f"unsupported or malformed digest {digest!r} in {uri!r} (sha256 only)")
    elif ":" in rest.rsplit("/", 1)[-1]:
        rest, _, tag = rest.rpartition(":")
        if not _TAG.match(tag):
            raise FetchError(f"malformed tag {tag!r} in {uri!r}")
    if not _HOST.match(host) or not _REPOSITORY.match(rest):
        raise FetchError(f"malformed oci:// target {uri!r}", hint="expected oci://HOST[:PORT]/REPOSITORY@sha256:DIGEST")
    return OciReference(host.lower(), rest, digest, tag)


class RegistryClient:
    """One registry's Distribution API, pulled through by digest (see the module docstring)."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: RegistryCredentials | None = None,
        authorization: str | None = None,
        insecure: bool = False,
        ca_bundle: Path | None = None,
        limits: FetchLimits = _DEFAULT_LIMITS,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Talk to ``registry`` (``host:port`` or an ``https://`` / ``http://`` URL).

        Raises:
            FetchError: the URL asks for plain HTTP without ``insecure``, or the CA bundle is unreadable.
        """
        scheme, sep, host = registry.rstrip("/").partition("://")
        if not sep:
            scheme, host = ("http" if insecure else "https"), registry.rstrip("/")
        if scheme not in ("http", "https") or not _HOST.match(host):
            raise FetchError(f"malformed registry address {registry!r}")
        if scheme == "http" and not insecure:
            raise FetchError(
                f"refusing plain HTTP to {host}", hint=f"name it with --insecure-registry {host} if that is intended"
            )
        self.base = f"{scheme}://{host}"
        self.insecure = insecure
        self.limits = limits
        self._credentials = credentials
        self._authorization = authorization
        self._tokens: dict[str, str] = {}
        self._max_retries, self._backoff_s, self._sleep = max_retries, backoff_s, sleep
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise FetchError(f"cannot read the CA bundle {ca_bundle}: {exc}") from exc
        if transport is None and not set(urllib.request.getproxies()) - {
            "no"
        }:  # with a proxy, httpx's own transport routes
            transport = StdlibGetTransport(verify)  # bodies received without httpx's per-piece cost (oci_transport)
        self._http = httpx.Client(
            verify=verify, timeout=timeout_s, follow_redirects=True, transport=transport, max_redirects=10
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        """Use as a context manager."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on exit."""
        self.close()

    # -- requests -----------------------------------------------------------------------------

    @contextmanager
    def request(
        self,
        method: str,
        path: str,
        repository: str,
        accept: str | None = None,
        *,
        push: bool = False,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        expect: Collection[int] = (200,),
    ) -> Iterator[httpx.Response]:
        """Send one request (authenticating, retrying) and yield the streamed answer, whose status is in ``expect``.

        ``push`` asks the token service for ``pull,push`` scope (uploads, manifest PUTs; see oci_push).

        Raises:
            FetchError: unreachable, refused, or answered with a status outside ``expect``.
        """
        url = f"{self.base}{path}"
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        auth_tries = retries = 0
        while True:
            # identity only: a decoded Content-Encoding could expand without bound before any cap applies
            sent = {"Accept": accept, "Accept-Encoding": "identity"} if accept else {"Accept-Encoding": "identity"}
            sent |= headers or {}
            header = self._tokens.get(scope) or self._authorization
            if header:
                sent["Authorization"] = header
            try:
                request = self._http.build_request(method, url, headers=sent, content=content)
                response = self._http.send(request, stream=True)
            except (httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
                if retries >= self._max_retries:
                    raise FetchError(f"{method} {url} failed after {retries + 1} tries: {exc}") from exc
                retries += 1
                self._sleep(self._backoff_s * 2 ** (retries - 1))
                continue
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot reach the registry at {self.base}: {exc}") from exc
            if response.status_code == 401 and auth_tries == 0:
                auth_tries += 1
                challenge = response.headers.get("www-authenticate", "")
                response.close()
                self._answer(challenge, scope)
                continue
            if response.status_code in _RETRY_STATUS and retries < self._max_retries:
                retries += 1
                delay = self._retry_after(response) or self._backoff_s * 2 ** (retries - 1)
                response.close()
                self._sleep(min(delay, _MAX_RETRY_AFTER_S))
                continue
            try:
                self._check_status(response, method, path, expect, "push" if push else "pull")
                yield response
            except httpx.HTTPError as exc:  # the body broke off while it streamed
                raise FetchError(f"{method} {url} broke off: {exc}") from exc
            finally:
                response.close()
            return

    def _check_status(
        self, response: httpx.Response, method: str, path: str, expect: Collection[int], access: str
    ) -> None:
        status = response.status_code
        if status in expect:
            if response.headers.get("content-encoding", "identity").lower() not in ("identity", ""):
                raise FetchError(f"the registry {self.base} sent {path} with a Content-Encoding it was not asked for")
            return
        if status in (401, 403):
            raise FetchError(
                f"the registry {self.base} refused {method} {path} ({status}): the credentials are wrong or lack {access} access",
                hint="check --registry-auth-file or the Docker config (auths) for this registry",
            )
        if status == 404:
            raise FetchError(f"{self.base}{path} does not exist (404)")
        raise FetchError(f"the registry {self.base} answered {status} to {method} {path}")

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        try:
            return max(0.0, float(response.headers.get("retry-after", "")))
        except ValueError:
            return None

    def _answer(self, challenge: str, scope: str) -> None:
        scheme, params = parse_challenge(challenge)
        if self._credentials is None and (self._authorization or "").lower().startswith("bearer "):
            raise FetchError(
                f"the registry {self.base} refused the Bearer token it was given: the credentials are wrong or expired"
            )
        if scheme == "basic":
            if self._credentials is None:
                given = "refused the credentials it was given" if self._authorization else "needs credentials"
                raise FetchError(
                    f"the registry {self.base} {given} (HTTP Basic)",
                    hint="check --registry-auth-file or the Docker config (auths) for this registry",
                )
            self._authorization = self._credentials.basic()
        elif scheme == "bearer" and params.get("realm"):
            self._tokens[scope] = "Bearer " + self._token(params, scope)
        else:
            raise FetchError(f"the registry {self.base} asks for unsupported authentication {challenge[:200]!r}")

    def _token(self, params: dict[str, str], scope: str) -> str:
        realm = params["realm"]
        if not realm.startswith("https://") and not (self.insecure and realm.startswith("http://")):
            raise FetchError(f"refusing to send credentials to the non-HTTPS token service {realm!r}")
        headers = {}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.basic()
        elif self._authorization and self._authorization.lower().startswith("basic "):
            headers["Authorization"] = self._authorization
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            with self._http.stream("GET", realm, params=query, headers=headers) as response:
                if response.status_code != 200:
                    raise FetchError(
                        f"the token service {realm} refused the credentials ({response.status_code})",
                        hint="check --registry-auth-file or the Docker config (auths) for this registry",
                    )
                body = read_capped(response, _MAX_TOKEN_BYTES, "token response")
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot reach the token service {realm}: {exc}") from exc
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser's stack
            raise FetchError(f"the token service {realm} answered something that is not JSON") from exc
        token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise FetchError(f"the token service {realm} answered without a token")
        return token

    # -- manifests and blobs -----------------------------------------------------------------

    def resolve_tag(self, repository: str, tag: str) -> str:
        """The digest a tag points at now (HEAD, falling back to GET and hashing).

        Raises:
            FetchError: the tag does not exist or the registry fails.
        """
        with self.request("HEAD", f"/v2/{repository}/manifests/{tag}", repository, ACCEPT) as response:
            digest = str(response.headers.get("docker-content-digest", ""))
        if DIGEST.match(digest):
            return digest
        with self.request("GET", f"/v2/{repository}/manifests/{tag}", repository, ACCEPT) as response:
            body = read_capped(response, self.limits.max_manifest_bytes, f"manifest {tag}")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def manifest(self, repository: str, digest: str) -> dict[str, object]:
        """The parsed manifest or index ``digest``, checked against its digest.

        Raises:
            FetchError: missing, over the size cap, not matching its digest, or not a JSON object.
        """
        if not DIGEST.match(digest):
            raise FetchError(f"unsupported or malformed digest {digest!r}")
        with self.request("GET", f"/v2/{repository}/manifests/{digest}", repository, ACCEPT) as response:
            body = read_capped(response, self.limits.max_manifest_bytes, f"manifest {digest}")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise FetchError(f"manifest {digest} from {self.base} does not match its digest")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser's stack
            raise FetchError(f"manifest {digest} is not JSON") from exc
        if not isinstance(data, dict):
            raise FetchError(f"manifest {digest} is not a JSON object")
        return data

    def model_manifest(self, repository: str, digest: str) -> tuple[str, dict[str, object]]:
        """The image manifest at ``digest``, or the one model manifest an index at ``digest`` lists.

        Raises:
            FetchError: see :meth:`manifest`; or an index lists no single model/platform-less manifest.
        """
        manifest = self.manifest(repository, digest)
        if manifest.get("mediaType") not in INDEX_TYPES and "manifests" not in manifest:
            return digest, manifest
        entries = [m for m in manifest.get("manifests") or [] if isinstance(m, dict)]  # type: ignore[attr-defined]
        models = [m for m in entries if m.get("artifactType") == MODEL_ARTIFACT_TYPE]
        chosen = models or [m for m in entries if "platform" not in m and m.get("mediaType") in MANIFEST_TYPES]
        if len(chosen) != 1:
            raise FetchError(
                f"index {digest} lists {len(entries)} manifests and {len(chosen)} model or platform-less ones",
                hint="name the model manifest's own digest",
            )
        inner = str(chosen[0].get("digest", ""))
        inner_manifest = self.manifest(repository, inner)
        if inner_manifest.get("mediaType") in INDEX_TYPES or "manifests" in inner_manifest:
            raise FetchError(f"index {digest} points at another index {inner} (nested indexes are not followed)")
        return inner, inner_manifest

    @contextmanager
    def blob(self, repository: str, digest: str, *, prefetch: int = 8) -> Iterator[HashingReader]:
        """Yield blob ``digest`` as it downloads (hashed, capped); on exit it was read whole and matched.

        One pass over the bytes (see :mod:`weightguard.sources.oci_stream` for why that is safe);
        ``prefetch``: pieces a receiving thread may hold ahead of the reader (0: no such thread).

        Raises:
            FetchError: missing, over ``limits.max_bytes``, or not matching its digest.
        """
        if DIGEST.match(digest) is None:
            raise FetchError(f"unsupported or malformed digest {digest!r}")
        with self.request("GET", f"/v2/{repository}/blobs/{digest}", repository) as response:
            stream = ResponseStream(
                response.iter_raw(), self.limits.max_bytes, f"blob {digest}", prefetch=prefetch, on_close=response.close
            )
            reader = HashingReader(cast(IO[bytes], stream))  # HashingReader only calls read(n)
            try:
                yield reader
                reader.drain()
            finally:
                stream.close()
        if "sha256:" + reader.hash.hexdigest() != digest:
            raise FetchError(f"blob {digest} from {self.base} does not match its digest")

    def pull(self, repository: str, digest: str, dest: Path, *, record: bool = False) -> FetchedArtifact:
        """Unpack the artifact ``repository@digest`` into ``dest`` (see the module docstring).

        Layers are fetched in parallel (:mod:`weightguard.sources.oci_blobs`); with ``record`` the
        result lists each file's sha256 as written.

        Raises:
            FetchError: it cannot be pulled, does not match its digest, breaks a limit or is unsafe.
        """
        if not _REPOSITORY.match(repository):
            raise FetchError(f"malformed repository name {repository!r}")
        chosen, manifest = self.model_manifest(repository, digest)
        fresh, done = not dest.exists(), False
        try:
            fetched = unpack_parallel(
                manifest,
                chosen,
                lambda blob: self.blob(repository, blob),
                dest,
                self.limits,
                record=record,
                open_pooled=lambda blob: self.blob(repository, blob, prefetch=0),
            )
            done = True
        finally:
            if fresh and not done:  # blobs unpack as they stream: nothing from a refused pull stays behind
                shutil.rmtree(dest, ignore_errors=True)
        return fetched


def read_capped(response: httpx.Response, cap: int, what: str) -> bytes:
    """The whole (raw) body of ``response``; raises FetchError past ``cap`` bytes."""
    body = bytearray()
    for chunk in response.iter_raw(CHUNK):
        body += chunk
        if len(body) > cap:
            raise FetchError(f"the {what} is over {cap} bytes")
    return bytes(body)


__all__ = [
    "OciReference",
    "RegistryClient",
    "parse_oci_uri",
    "read_capped",
]
