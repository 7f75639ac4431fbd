"""Operator changes to rate limits through the service: validated, saved and audited together,
whoever calls it (the admin, a script, a shell)."""

import pytest
from django.core.exceptions import ValidationError

from orchestration.models import AuditEntry, AuditOutcome, RateLimit
from orchestration.services.rate_limits import rate_limit_delete, rate_limit_save

pytestmark = pytest.mark.django_db


def new_limit(**fields) -> RateLimit:
    values = {
        "action_type": "POST_SOCIAL",
        "key_fields": " platform , account ",
        "max_count": 5,
        "period_seconds": 3600,
    }
    return RateLimit(**{**values, **fields})


def test_rate_limit_save__a_limit_saved_from_python_is_normalised_stamped_and_audited():
    limit = rate_limit_save(limit=new_limit(), actor="script:ops@host", reason="platform terms")
    stored = RateLimit.objects.get()
    assert stored.pk == limit.pk
    assert (stored.key_fields, stored.updated_by) == ("platform,account", "script:ops@host")
    entry = AuditEntry.objects.get()
    assert (entry.verb, entry.outcome, entry.actor, entry.reason) == (
        "add rate limit",
        AuditOutcome.DONE,
        "script:ops@host",
        "platform terms",
    )
    assert entry.target == f"rate limit #{stored.pk} (POST_SOCIAL)"
    assert entry.after == {
        "action_type": "POST_SOCIAL",
        "key_fields": "platform,account",
        "max_count": 5,
        "period_seconds": 3600,
        "enabled": True,
    }


def test_rate_limit_save__a_change_records_before_and_after():
    limit = rate_limit_save(limit=new_limit(), actor="ops")
    limit.max_count = 3
    rate_limit_save(limit=limit, actor="ops")
    entry = AuditEntry.objects.get(verb="change rate limit")
    assert (entry.before["max_count"], entry.after["max_count"]) == (5, 3)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action_type": "NO_SUCH_TYPE"}, "action_type"),
        ({"max_count": 0}, "max_count"),
        ({"key_fields": "platform,followers"}, "key_fields"),
    ],
)
def test_rate_limit_save__an_invalid_limit_is_refused_by_field_and_nothing_is_written(fields, field):
    with pytest.raises(ValidationError) as caught:
        rate_limit_save(limit=new_limit(**fields), actor="ops")
    assert field in caught.value.message_dict
    assert not RateLimit.objects.exists() and not AuditEntry.objects.exists()


def test_rate_limit_delete__deletes_and_audits_the_last_values():
    limit = rate_limit_save(limit=new_limit(), actor="ops")
    pk = limit.pk
    rate_limit_delete(limit=limit, actor="ops", reason="terms changed")
    assert not RateLimit.objects.exists()
    entry = AuditEntry.objects.get(verb="delete rate limit")
    assert (entry.target, entry.reason, entry.before["max_count"]) == (
        f"rate limit #{pk} (POST_SOCIAL)",
        "terms changed",
        5,
    )
