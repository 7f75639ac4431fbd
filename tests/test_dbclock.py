"""The database's clock: DbNow() compares with stored datetimes as the instants they are, on both databases."""

from datetime import timedelta

import pytest
from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.utils import timezone

from orchestration.dbclock import DbNow, db_now
from orchestration.models import Action, Lease
from tests.factories import post_social

pytestmark = pytest.mark.django_db


def test_db_now__is_an_aware_utc_time_from_the_database():
    before = db_now()
    after = db_now()
    assert before.utcoffset() == timedelta(0)
    assert before <= after
    assert abs(after - timezone.now()) < timedelta(seconds=5)  # this test's host is the database's


def test_db_now__equals_itself_in_the_form_a_datetime_is_stored_in():
    """One statement, so one instant: DbNow() beside the same instant written as Django writes a
    stored datetime (``+ 0``, computed outside the database on SQLite). Equal instants must compare
    equal; with Django's Now() on SQLite ``'…:11.123000' <= '…:11.123'`` was false."""
    stored_form = ExpressionWrapper(DbNow() + Value(timedelta(0)), output_field=DateTimeField())
    assert Lease.objects.annotate(stored=stored_form).filter(stored__lte=DbNow(), stored__gte=DbNow()).exists()


def test_db_now__an_action_is_due_in_the_millisecond_its_not_before_names():
    """A not_before read from the database's clock is due at once. SQLite's clock counts
    milliseconds and these rounds take less than one each, so most of them meet that case."""
    for n in range(200):
        action = post_social(f"k{n}")
        Action.objects.filter(pk=action.pk).update(not_before=db_now())
        assert list(Action.objects.due().values_list("pk", flat=True)) == [action.pk], f"round {n}"
        Action.objects.filter(pk=action.pk).delete()
