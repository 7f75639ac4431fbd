"""One snapshot of the AOL's state, shared by ``aol_status``, the status view and its JSON."""

from typing import Any

from django.db.models import Count

from orchestration.conf import aol
from orchestration.models import Action, ActionStatus, TickLedger
from orchestration.services.control import control_flags_get
from orchestration.services.lease import lease_get


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def lease_state(*, expires_in_seconds: float | None) -> str:
    """green: held and fresh; amber: about to expire (missed heartbeats); red: no live holder."""
    if expires_in_seconds is None or expires_in_seconds <= 0:
        return "red"
    if expires_in_seconds < aol.lease_ttl_seconds - 2 * aol.heartbeat_seconds:
        return "amber"
    return "green"


def status_snapshot() -> dict[str, Any]:
    """Flags, lease, last tick and queue counts, as JSON-ready values (no secrets)."""
    flags = control_flags_get()
    lease = lease_get()
    expires_in = None
    if lease is not None and lease.owner and lease.expires_at:
        expires_in = (lease.expires_at - lease.db_now).total_seconds()
    holder = lease.owner if lease is not None and expires_in is not None and expires_in > 0 else ""
    last_tick = TickLedger.objects.order_by("-started_at", "-id").first()
    counts = {status: 0 for status in ActionStatus.values}
    counts.update(dict(Action.objects.order_by().values_list("status").annotate(n=Count("id"))))
    return {
        "flags": {
            "paused": flags.paused,
            "killed": flags.killed,
            "proof_mode": flags.proof_mode,
            "mode": "PROOF" if (flags.proof_mode or aol.proof_mode) else "REAL",
            "proof_forced_by_settings": bool(aol.proof_mode),
            "updated_at": _iso(flags.updated_at),
            "updated_by": flags.updated_by,
        },
        "lease": {
            "holder": holder,
            "last_owner": lease.owner if lease is not None else "",
            "token": lease.token if lease is not None else 0,
            "expires_at": _iso(lease.expires_at) if lease is not None else None,
            "expires_in_seconds": round(expires_in, 1) if expires_in is not None else None,
            "state": lease_state(expires_in_seconds=expires_in),
        },
        "last_tick": None
        if last_tick is None
        else {
            "id": last_tick.pk,
            "status": last_tick.status,
            "started_at": _iso(last_tick.started_at),
            "finished_at": _iso(last_tick.finished_at),
            "duration_seconds": round(last_tick.duration_seconds, 3),
            "actions_attempted": last_tick.actions_attempted,
            "actions_succeeded": last_tick.actions_succeeded,
            "owner": last_tick.owner,
            "notes": last_tick.notes,
        },
        "counts": counts,
    }
