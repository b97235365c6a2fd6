"""A read-only web dashboard for the sidecar: server-rendered pages, no JavaScript, no build step.

Mount :func:`dashboard_router` in the sidecar app behind the same authentication
as the API. Not handled here: running verifications or changing the rollout record.
"""

from weightguard.sidecar_dashboard.dashboard import dashboard_router
from weightguard.sidecar_dashboard.interface import RecentVerifications, RolloutRecord, VerificationEntry

__all__ = ["RecentVerifications", "RolloutRecord", "VerificationEntry", "dashboard_router"]
