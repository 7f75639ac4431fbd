"""The console's enqueue form validates through the queue's one validation and shows each error on its field."""

import pytest
from django.urls import reverse

from orchestration.models import Action, AuditEntry
from tests.console_fixtures import client_for

pytestmark = pytest.mark.django_db

ENQUEUE_URL = reverse("orchestration:enqueue")


def test_enqueue__approval_for_a_type_that_cannot_be_gated_is_an_error_on_the_approval_field(operator):
    response = client_for(operator).post(
        ENQUEUE_URL,
        {
            "enqueue-action_type": "DRAFT_SOCIAL",
            "enqueue-payload": '{"platform": "x", "brief": "spring launch"}',
            "enqueue-requires_approval": "on",
            "enqueue-reason": "drill",
        },
    )
    assert response.status_code == 200
    errors = response.context["enqueue_form"].errors
    assert list(errors) == ["requires_approval"]
    assert "DRAFT_SOCIAL actions cannot require approval" in errors["requires_approval"][0]
    assert not Action.objects.exists() and not AuditEntry.objects.exists()


def test_enqueue_form__checks_the_payload_with_its_types_adapter_including_extra_ones(operator, settings):
    settings.AOL_EXTRA_ADAPTERS = ["tests.fake_adapters.HangAdapter"]
    from orchestration.web.forms import EnqueueForm

    form = EnqueueForm(
        {"enqueue-action_type": "HANG", "enqueue-payload": '{"seconds": -1}', "enqueue-reason": "drill"},
        prefix="enqueue",
    )
    assert not form.is_valid()
    assert list(form.errors) == ["payload"] and "'seconds' must be a number >= 0" in form.errors["payload"][0]
