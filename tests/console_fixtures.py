"""Users and helpers for the operator console's view and admin tests."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from orchestration.models import Action, ActionStatus, AuditEntry
from orchestration.permissions import OPERATORS_GROUP
from orchestration.services.control import control_flags_get
from orchestration.services.enqueue import action_enqueue

PASSWORD = "a-long-test-password-42"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "", PASSWORD)


@pytest.fixture
def operator(django_user_model):
    """A staff member of the "AOL operators" group (everything but switching to REAL)."""
    user = django_user_model.objects.create_user("oper", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    return user


@pytest.fixture
def viewer(django_user_model):
    """Staff who may look at everything but change nothing."""
    user = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="orchestration", codename__startswith="view_")
    )
    return user


@pytest.fixture
def non_staff(django_user_model):
    return django_user_model.objects.create_user("customer", password=PASSWORD)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def flags_state() -> tuple[bool, bool, bool]:
    flags = control_flags_get()
    return flags.paused, flags.killed, flags.proof_mode


def dead_action(n: int = 0, **fields) -> Action:
    """An action in the DLQ after two attempts."""
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "twitter", "message": f"dead {n}"})
    Action.objects.filter(pk=action.pk).update(
        status=ActionStatus.DLQ, attempts=2, last_error="PermanentAdapterError: nope", **fields
    )
    action.refresh_from_db()
    return action


def denied_entries(verb: str):
    return AuditEntry.objects.filter(verb=verb, outcome="DENIED")


def actions_with_status(status: str, count: int, *, prefix: str | None = None) -> None:
    """``count`` actions in ``status``, created in one statement (as the bench's bulk fill does)."""
    prefix = prefix or f"{status.lower()}-{Action.objects.count()}"
    Action.objects.bulk_create(
        Action(
            idempotency_key=f"{prefix}-{n}",
            action_type="POST_SOCIAL",
            payload={"platform": "x", "message": "m"},
            status=status,
            attempts=0 if status == ActionStatus.PENDING else 1,
            lease_token=1 if status == ActionStatus.RUNNING else None,
        )
        for n in range(count)
    )
