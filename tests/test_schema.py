"""The migrated schema: the five tables by their seed names, and the constraints that guard them."""

import pytest
from django.db import IntegrityError, connection

from orchestration.models import Action, ControlFlags, Lease

pytestmark = pytest.mark.django_db

AOL_TABLES = {"aol_control_flags", "aol_tick_ledger", "aol_lease", "aol_actions", "aol_execution_logs"}


def test_migrate__creates_the_five_aol_tables():
    assert AOL_TABLES <= set(connection.introspection.table_names())


def test_migrate__fresh_database_has_the_singletons_in_proof_mode():
    flags = ControlFlags.objects.get()
    assert (flags.pk, flags.proof_mode, flags.paused, flags.killed) == (1, True, False, False)
    assert Lease.objects.get().owner == ""


@pytest.mark.parametrize("model", [ControlFlags, Lease])
def test_constraints__a_second_singleton_row_is_rejected_by_the_database(model):
    with pytest.raises(IntegrityError):
        model.objects.create(pk=2)


def test_constraints__duplicate_idempotency_key_is_rejected_by_the_database():
    Action.objects.create(idempotency_key="k", action_type="POST_SOCIAL", payload={})
    with pytest.raises(IntegrityError):
        Action.objects.create(idempotency_key="k", action_type="POST_SOCIAL", payload={})


def test_constraints__running_without_a_lease_token_is_rejected_by_the_database():
    with pytest.raises(IntegrityError):
        Action.objects.create(idempotency_key="k", action_type="POST_SOCIAL", payload={}, status="RUNNING")
