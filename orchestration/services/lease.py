"""The daemon lease: only the holder of an unexpired lease works the queue.

Expiry is judged by the database's clock (``DbNow()``), never the caller's. Each new acquisition
bumps ``token``; renewals keep it. Every write a daemon makes to the queue is fenced on its token
(``lease_is_current``), so a daemon that stalled past its TTL and was replaced cannot write.

An owner name (``lease_owner_new``) names one process start, so that a live lease held under our own
name can only be this process's.
"""

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Exists, QuerySet, Value

from orchestration.conf import aol
from orchestration.dbclock import DbNow
from orchestration.models import Action, ActionStatus, Lease

logger = logging.getLogger("orchestration")

#: Linux's HOST_NAME_MAX: keeps an owner name far inside the 255 characters of the owner columns.
HOSTNAME_MAX_LENGTH = 64


@dataclass(frozen=True)
class LeaseResult:
    ok: bool
    reason: str
    token: int | None = None
    acquired: bool = False  # True when this call began a new tenure (a new token)
    holder: str = ""
    expires_at: datetime | None = None


def lease_owner_new() -> str:
    """A new owner name, ``hostname:pid:<8 hex>``, for one process start of a daemon.

    Hostname and pid alone repeat: two daemons in separate PID namespaces on one host (containers,
    ``unshare``) can both be PID 1 under one hostname, and a lease held under the caller's own name
    is taken as a new tenure of the same process. The random part keeps such twins apart.
    """
    return f"{socket.gethostname()[:HOSTNAME_MAX_LENGTH]}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_is_current(*, token: int) -> Exists:
    """A filter expression true while ``token`` is the lease's newest token."""
    return Exists(Lease.objects.filter(pk=Lease.SINGLETON_ID, token=token))


def lease_fenced_actions(*, pks: list[int], token: int) -> QuerySet[Action]:
    """These actions, only while RUNNING under ``token`` and while ``token`` is the lease's token.

    Every write that records an attempt's result goes through this filter, so a daemon replaced
    while its attempt ran changes nothing.
    """
    return Action.objects.filter(pk__in_array=pks, status=ActionStatus.RUNNING, lease_token=token).filter(
        lease_is_current(token=token)
    )


def lease_acquire_or_renew(
    *, owner: str, ttl_seconds: float, token: int | None = None, proof_forced_by: str = ""
) -> LeaseResult:
    """Renew the lease held under ``token``, or acquire it if it is free or expired.

    ``proof_forced_by`` (why this daemon runs in PROOF whatever the flag says, '' if it does not) is
    published on the row with each acquisition, for the console to show the mode really applied.
    """
    if token is not None and lease_renew(owner=owner, token=token, ttl_seconds=ttl_seconds):
        return LeaseResult(ok=True, reason="renewed", token=token, holder=owner)
    return _acquire(owner=owner, ttl=timedelta(seconds=ttl_seconds), proof_forced_by=proof_forced_by)


def lease_renew(*, owner: str, token: int, ttl_seconds: float) -> bool:
    """Extend the lease held under ``token`` (one statement); False once it expired or was taken."""
    return bool(
        Lease.objects.filter(pk=Lease.SINGLETON_ID, owner=owner, token=token, expires_at__gt=DbNow()).update(
            renewed_at=DbNow(), expires_at=DbNow() + Value(timedelta(seconds=ttl_seconds))
        )
    )


def _acquire(*, owner: str, ttl: timedelta, proof_forced_by: str) -> LeaseResult:
    with transaction.atomic():
        # Row lock on PostgreSQL; on SQLite the IMMEDIATE transaction already holds the write lock.
        lease = Lease.objects.select_for_update().annotate(db_now=DbNow()).filter(pk=Lease.SINGLETON_ID).first()
        if lease is None:
            try:
                with transaction.atomic():
                    Lease.objects.create(pk=Lease.SINGLETON_ID)
            except IntegrityError:
                pass  # created concurrently
            lease = Lease.objects.select_for_update().annotate(db_now=DbNow()).get(pk=Lease.SINGLETON_ID)
        now = lease.db_now
        # A live lease of another owner is refused. Our own owner name (unique per process start,
        # lease_owner_new) means this process is starting a new tenure, e.g. after a database error:
        # the new token fences off whatever the old tenure left RUNNING, and recovery returns it.
        if lease.owner and lease.owner != owner and lease.expires_at and lease.expires_at > now:
            return LeaseResult(
                ok=False,
                reason=f"held by {lease.owner} until {lease.expires_at.isoformat()}",
                holder=lease.owner,
                expires_at=lease.expires_at,
            )
        previous = lease.owner
        lease.owner = owner
        lease.token += 1
        lease.acquired_at = lease.renewed_at = now
        lease.expires_at = now + ttl
        lease.proof_forced_by = proof_forced_by[:100]
        lease.save(update_fields=["owner", "token", "acquired_at", "renewed_at", "expires_at", "proof_forced_by"])
    if previous == owner:
        reason = "acquired again: a new tenure of this daemon"
    else:
        reason = f"acquired (previous holder {previous} expired)" if previous else "acquired"
    logger.info("lease acquired owner=%s token=%s previous=%s", owner, lease.token, previous or "-")
    return LeaseResult(
        ok=True, reason=reason, token=lease.token, acquired=True, holder=owner, expires_at=lease.expires_at
    )


def lease_release(*, owner: str, token: int) -> bool:
    """Give the lease up at once so a standby need not wait for the TTL. False if it was not ours."""
    released = Lease.objects.filter(pk=Lease.SINGLETON_ID, owner=owner, token=token).update(
        owner="", expires_at=DbNow(), proof_forced_by=""
    )
    if released:
        logger.info("lease released owner=%s token=%s", owner, token)
    return bool(released)


def lease_release_within(*, owner: str, token: int, timeout_seconds: float) -> bool:
    """``lease_release`` on a thread and connection of its own, waiting for it at most ``timeout_seconds``.

    For a process about to exit at once: the caller's connection may be in the middle of a statement,
    and a database that does not answer (down, or the lease row locked) must not hold the exit up.
    False when it was not released in time; the lease then expires at its TTL.
    """
    released = threading.Event()

    def release() -> None:
        try:
            if lease_release(owner=owner, token=token):
                released.set()
        except DatabaseError as exc:
            logger.warning("lease release failed owner=%s token=%s: %s", owner, token, type(exc).__name__)
        finally:
            connections.close_all()  # this thread's connections only

    threading.Thread(target=release, name="aol-lease-release", daemon=True).start()
    return released.wait(timeout_seconds)


def lease_get() -> Lease | None:
    """The lease row annotated with the database time as ``db_now``, or None before first use."""
    return Lease.objects.annotate(db_now=DbNow()).filter(pk=Lease.SINGLETON_ID).first()


@dataclass(frozen=True)
class LeaseHealth:
    """One reading of the lease, judged by the database's clock; the console, ``aol_status``,
    ``/metrics``, the sentinels and the admin all show this one."""

    holder: str  # the owner of an unexpired lease, or ""
    last_owner: str  # whoever held it last ("" once released)
    token: int
    expires_at: datetime | None
    expires_in_seconds: float | None  # negative once expired; None when released or never held
    heartbeat_age_seconds: float | None  # since the last renewal (or the acquisition)
    state: str  # "green": held and fresh; "amber": held, but heartbeats are late; "red": no live holder
    proof_forced_by: str = ""  # the live holder's reason to run in PROOF whatever the flag says ('' if none)

    @property
    def held(self) -> bool:
        return self.state != "red"


def lease_health() -> LeaseHealth:
    """The lease's health now, by the database's clock (one query)."""
    return lease_health_of(lease_get())


def lease_health_of(lease: Lease | None) -> LeaseHealth:
    """The health of ``lease``, a row annotated with the database time as ``db_now`` (as ``lease_get`` returns it).

    Amber means two heartbeats were missed: less than TTL - 2 x heartbeat left, or no renewal for
    2 x heartbeat (a holder running with another TTL than this process's settings).
    """
    if lease is None:
        return LeaseHealth("", "", 0, None, None, None, "red")
    expires_in = age = None
    if lease.owner and lease.expires_at:
        # db_now comes from .annotate(), which the stubs cannot follow through a "-> Lease" signature.
        now: datetime = lease.db_now  # type: ignore[attr-defined]
        expires_in = (lease.expires_at - now).total_seconds()
        beat = lease.renewed_at or lease.acquired_at
        age = (now - beat).total_seconds() if beat else None
    if expires_in is None or expires_in <= 0:
        state = "red"
    elif expires_in < aol.lease_ttl_seconds - 2 * aol.heartbeat_seconds or (
        age is not None and age > 2 * aol.heartbeat_seconds
    ):
        state = "amber"
    else:
        state = "green"
    return LeaseHealth(
        holder=lease.owner if state != "red" else "",
        last_owner=lease.owner,
        token=lease.token,
        expires_at=lease.expires_at,
        expires_in_seconds=expires_in,
        heartbeat_age_seconds=age,
        state=state,
        proof_forced_by=lease.proof_forced_by if state != "red" else "",
    )
