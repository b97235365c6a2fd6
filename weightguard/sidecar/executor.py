"""What each kind of job does: verify a target, pull a Harbor artifact first, or write back to MLflow.

Job kinds: ``verify`` (generic API), ``huggingface`` (Hub webhook),
``mlflow`` (verify, then write tags/alias back), ``harbor`` (pull the image
into a temporary folder, verify it, then show paths relative to the image; an
approval may then be attached to the registry, :mod:`weightguard.sidecar.attach`).
A local target is pinned by descriptor under its model root for the whole
job and must still be the same inode afterwards
(:mod:`weightguard.sidecar.confine`); the pipeline reads it through
``/proc/self/fd``, and the report shows the target's own path again.
After a report with a root digest, the model is recorded in the rollout
record (first stage if new) so ``/v1/approvals`` and promotions know it.
Not handled here: queueing, persistence and retries (:mod:`weightguard.sidecar.jobs`).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from weightguard.errors import UsageError, WeightguardError
from weightguard.report.model import Report
from weightguard.sidecar.attach import ApprovalAttacher
from weightguard.sidecar.confine import pin
from weightguard.sidecar.fetch import ArtifactFetcher, ArtifactRef, FetchError
from weightguard.sidecar.jobs import JobResult
from weightguard.sidecar.jobstore import JobRecord
from weightguard.sidecar.verifier import DEFAULT_POLICY, Verifier
from weightguard.sidecar.writeback import RegistryWriteback
from weightguard.verdict.store import RolloutStore

_log = logging.getLogger(__name__)

ACTOR = "weightguard-sidecar"


class JobExecutor:
    """Runs one stored job to a :class:`JobResult`."""

    def __init__(
        self,
        verifier: Verifier,
        *,
        database: str,
        first_stage: str,
        fetcher: ArtifactFetcher | None = None,
        writeback: RegistryWriteback | None = None,
        model_subdir: str = "",
        credentials: MutableMapping[str, str] | None = None,
        roots: Sequence[Path] = (),
        attacher: ApprovalAttacher | None = None,
    ) -> None:
        """Wire the collaborators; ``credentials`` holds Harbor pull tokens in memory only, by job id."""
        self.verifier = verifier
        self.database = database
        self.first_stage = first_stage
        self.fetcher = fetcher
        self.writeback = writeback
        self.model_subdir = model_subdir
        self.credentials: MutableMapping[str, str] = credentials if credentials is not None else {}
        self.roots = tuple(roots)
        self.attacher = attacher

    def __call__(self, job: JobRecord) -> JobResult:
        """Run ``job``.

        Raises:
            WeightguardError: the job could not be done.
        """
        policy = job.policy or DEFAULT_POLICY
        note: str | None = None
        if job.kind in ("verify", "huggingface"):
            report = self._verify(job.target, policy)
        elif job.kind == "mlflow":
            report = self._verify(job.target, policy)
            note = self._write_back(job, report)
        elif job.kind == "harbor":
            report, note = self._harbor(job, policy)
        else:
            raise UsageError(f"unknown job kind {job.kind!r}")
        self._record(report)
        return JobResult(report, note)

    def _verify(self, target: str, policy: str) -> Report:
        """Verify ``target``; a local one through its descriptor, checked unchanged afterwards (issue 16)."""
        if target.startswith("hf://"):
            return self.verifier(target, policy)
        with pin(target, self.roots) as pinned:
            report = self.verifier(pinned.path, policy)
            pinned.check_unchanged()
            shown = target if pinned.name is None else str(Path(target).parent)
            report = relocate(report, pinned.base, shown, absolute=True)
            # Names the pipeline took from the /proc/self/fd path ("7") become the target's own again;
            # a name the verifier chose otherwise (a model's declared name) is kept.
            proc_names = {Path(pinned.path).name, Path(pinned.path).parent.name}
        if report.subject is not None:
            name = Path(target).name if report.subject.name in proc_names else report.subject.name
            subject = report.subject.model_copy(update={"name": name, "uri": target})
            report = report.model_copy(update={"subject": subject})
        return report.model_copy(update={"targets": [target]})

    def _write_back(self, job: JobRecord, report: Report) -> str | None:
        if self.writeback is None:
            return None
        try:
            self.writeback.write(job.request_field("name"), job.request_field("version"), report)
        except WeightguardError as exc:
            _log.warning("job %s: %s", job.id, exc.message)
            return exc.message
        return None

    def _harbor(self, job: JobRecord, policy: str) -> tuple[Report, str | None]:
        if self.fetcher is None:
            raise FetchError("no artifact fetcher is configured", hint="set WEIGHTGUARD_OCI_LAYOUT_ROOT")
        ref = ArtifactRef(
            registry_url=job.request_field("registry_url"),
            repository=job.request_field("repository"),
            digest=job.request_field("digest"),
            authorization=self.credentials.pop(job.id, None),
        )
        with tempfile.TemporaryDirectory(prefix="weightguard-oci-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            fetched = self.fetcher.fetch(ref, rootfs)
            scanned = rootfs / self.model_subdir if self.model_subdir else rootfs
            if not scanned.is_dir():
                raise FetchError(f"the image has no folder {self.model_subdir!r} to verify")
            report = relocate(self.verifier(str(scanned), policy), str(scanned), job.target)
        if self.attacher is None:
            return report, None
        # After the verdict and outside the temporary folder: a push that fails leaves the verdict as it is.
        attached = self.attacher.attach(report, ref, fetched.manifest_digest)
        return attached.report, attached.failure

    def _record(self, report: Report) -> None:
        subject = report.subject
        if subject is None or not subject.root_digest:
            return
        store = RolloutStore(self.database, first_stage=self.first_stage)
        try:
            store.register(subject.root_digest, subject.name, ACTOR, dt.datetime.now(dt.UTC))
        finally:
            store.close()


def relocate(report: Report, local_root: str, shown: str, *, absolute: bool = False) -> Report:
    """Replace a temporary folder in the report's paths by the artifact reference it was pulled from.

    With ``absolute`` the paths under ``local_root`` are shown under ``shown`` (a local folder),
    otherwise relative to it (an artifact reference is no folder).
    """
    prefix = local_root.rstrip("/") + "/"
    home = shown.rstrip("/") + "/" if absolute else ""

    def move(path: str) -> str:
        if path == local_root:
            return shown if absolute else "."
        return home + path[len(prefix) :] if path.startswith(prefix) else path

    update: dict[str, object] = {
        "targets": [shown if t == local_root else t for t in report.targets],
        "findings": [f.model_copy(update={"path": move(f.path)}) for f in report.findings],
        "files": [f.model_copy(update={"path": move(f.path)}) for f in report.files],
        "reasons": [r.replace(prefix, home).replace(local_root, shown if absolute else ".") for r in report.reasons],
    }
    if report.subject is not None:
        update["subject"] = report.subject.model_copy(update={"uri": shown})
    return report.model_copy(update=update)


__all__ = ["ACTOR", "JobExecutor", "relocate"]
