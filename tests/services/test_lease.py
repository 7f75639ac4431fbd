"""The daemon lease: one live holder, fencing tokens, expiry by the database clock."""

import os
import socket
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from orchestration.models import Lease
from orchestration.services.lease import (
    lease_acquire_or_renew,
    lease_owner_new,
    lease_release,
    lease_release_within,
    lease_renew,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db


def test_lease_acquire_or_renew__free_lease_is_acquired_with_a_new_token():
    result = lease_acquire_or_renew(owner="a:1", ttl_seconds=30)
    assert result.ok and result.acquired
    lease = Lease.objects.get()
    assert (lease.owner, lease.token) == ("a:1", result.token)
    assert timedelta(seconds=29) < lease.expires_at - lease.acquired_at <= timedelta(seconds=30)


def test_lease_acquire_or_renew__renewal_keeps_the_token_and_extends_expiry():
    first = lease_acquire_or_renew(owner="a:1", ttl_seconds=30)
    before = Lease.objects.get().expires_at
    again = lease_acquire_or_renew(owner="a:1", ttl_seconds=60, token=first.token)
    assert again.ok and not again.acquired and again.token == first.token
    assert Lease.objects.get().expires_at > before


def test_lease_acquire_or_renew__live_lease_of_another_owner_is_refused_naming_the_holder():
    lease_acquire_or_renew(owner="a:1", ttl_seconds=30)
    result = lease_acquire_or_renew(owner="b:2", ttl_seconds=30)
    assert not result.ok
    assert result.holder == "a:1" and "held by a:1 until" in result.reason
    assert Lease.objects.get().owner == "a:1"


def test_lease_acquire_or_renew__expired_lease_is_taken_over_with_a_larger_token():
    first = lease_acquire_or_renew(owner="a:1", ttl_seconds=30)
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    second = lease_acquire_or_renew(owner="b:2", ttl_seconds=30)
    assert second.ok and second.acquired and second.token > first.token
    assert "previous holder a:1 expired" in second.reason
    # the old holder can no longer renew: its tenure is over
    assert not lease_renew(owner="a:1", token=first.token, ttl_seconds=30)
    assert not lease_acquire_or_renew(owner="a:1", ttl_seconds=30, token=first.token).ok


def test_lease_acquire_or_renew__expiry_is_judged_by_the_database_clock():
    """A lease that the database says has expired is free, whatever the caller's clock says."""
    lease_acquire_or_renew(owner="a:1", ttl_seconds=30)
    Lease.objects.update(expires_at=timezone.now() - timedelta(milliseconds=1))
    assert lease_acquire_or_renew(owner="b:2", ttl_seconds=30).ok


def test_lease_release__frees_the_lease_at_once_but_only_for_its_holder():
    first = lease_acquire_or_renew(owner="a:1", ttl_seconds=30)
    assert not lease_release(owner="b:2", token=first.token)
    assert lease_release(owner="a:1", token=first.token)
    assert Lease.objects.get().owner == ""
    second = lease_acquire_or_renew(owner="b:2", ttl_seconds=30)
    assert second.ok and second.token == first.token + 1


def test_lease_acquire_or_renew__works_when_the_row_is_missing():
    Lease.objects.all().delete()
    assert lease_acquire_or_renew(owner="a:1", ttl_seconds=30).ok


def test_lease_owner_new__two_names_built_in_one_process_differ_and_name_host_and_pid():
    first, second = lease_owner_new(), lease_owner_new()
    assert first != second
    for owner in (first, second):
        host, pid, random_part = owner.rsplit(":", 2)
        assert (host, pid) == (socket.gethostname()[:64], str(os.getpid()))
        assert len(random_part) == 8 and int(random_part, 16) >= 0
    assert len(first) <= Lease._meta.get_field("owner").max_length


def test_lease_acquire_or_renew__a_daemon_with_the_same_host_and_pid_but_another_start_is_refused():
    """Two daemons that are both PID 1 on one hostname (containers) get different owner names."""
    holder, twin = lease_owner_new(), lease_owner_new()
    held = lease_acquire_or_renew(owner=holder, ttl_seconds=30)
    refused = lease_acquire_or_renew(owner=twin, ttl_seconds=30)
    assert not refused.ok and refused.holder == holder
    assert Lease.objects.values_list("owner", "token").get() == (holder, held.token)


@pytest.mark.django_db(transaction=True)
def test_lease_release_within__releases_from_its_own_connection_fenced_on_the_token():
    held = lease_acquire_or_renew(owner="a:1:00", ttl_seconds=30)
    assert not lease_release_within(owner="a:1:00", token=held.token + 1, timeout_seconds=5)
    assert Lease.objects.get().owner == "a:1:00"
    assert lease_release_within(owner="a:1:00", token=held.token, timeout_seconds=5)
    assert Lease.objects.get().owner == ""


@pytest.mark.django_db(transaction=True)
def test_lease_release_within__gives_up_at_its_timeout_while_the_lease_row_is_locked():
    """A process exiting at once is not held up by a database that does not answer in time."""
    held = lease_acquire_or_renew(owner="a:1:00", ttl_seconds=30)
    with transaction.atomic():
        Lease.objects.filter(pk=Lease.SINGLETON_ID).update(renewed_at=timezone.now())  # row / write lock
        started = time.monotonic()
        assert not lease_release_within(owner="a:1:00", token=held.token, timeout_seconds=0.5)
        assert time.monotonic() - started < 1.5
    # The abandoned release goes through once the lock is gone (in a real exit, the process is gone).
    wait_until(lambda: Lease.objects.get().owner == "", message="the late release")
