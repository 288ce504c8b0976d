"""The console for privacy staff and auditors, under ``/console/``: one router per page group,
all signed in with the tenant's API keys (``signin``) and reading through the API's routes
(``projections.web.calls``), so each key sees in the console what it may read from the API."""

from __future__ import annotations

from fastapi import APIRouter

from projections.web.console import audit, dashboard, home, signin
from projections.web.console import proofs as audit_proofs
from projections.web.console import replays as audit_replays

router = APIRouter()
router.include_router(signin.router)
router.include_router(home.router)
router.include_router(dashboard.router)
router.include_router(audit.router)
router.include_router(audit_replays.router)
router.include_router(audit_proofs.router)
