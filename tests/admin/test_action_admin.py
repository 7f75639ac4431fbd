"""The Action admin: list, filters, capped counting, detail page, artifact check, bulk actions."""

import hashlib

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orchestration.adapters.artifacts import artifact_write
from orchestration.adapters.store import artifact_put, artifact_rows_write
from orchestration.admin.records import COUNT_CAP
from orchestration.models import Action, ActionStatus, Artifact, AuditEntry, ExecutionLog
from orchestration.services.enqueue import action_enqueue
from orchestration.services.logs import log_write
from orchestration.services.operator import MAX_BULK_ACTIONS
from tests.console_fixtures import client_for, dead_action, denied_entries

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orchestration_action_changelist")


def change_url(action: Action) -> str:
    return reverse("admin:orchestration_action_change", args=[action.pk])


def many_dead(count: int) -> list[int]:
    """``count`` DLQ actions, created in one statement."""
    Action.objects.bulk_create(
        Action(
            idempotency_key=f"bulk-{n}",
            action_type="POST_SOCIAL",
            payload={"platform": "x", "message": "m"},
            status=ActionStatus.DLQ,
            attempts=3,
        )
        for n in range(count)
    )
    return list(Action.objects.order_by("id").values_list("pk", flat=True))


def test_action_changelist__columns_badges_and_newest_first(viewer):
    old = dead_action(1)
    new, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "hi"})
    page = client_for(viewer).get(CHANGELIST).content.decode()
    assert '<span class="badge badge-DLQ">DLQ</span>' in page
    assert '<span class="badge badge-PENDING">PENDING</span>' in page
    assert "PermanentAdapterError: nope" in page  # last error column
    assert page.index(f"{change_url(new)}") < page.index(f"{change_url(old)}")


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("status__exact=DLQ", "dead 1", "alive"),
        ("action_type=POST_SOCIAL", "alive", None),
        ("q=alive", "alive", "dead 1"),
    ],
)
def test_action_changelist__filters_and_search(query, shown, hidden, viewer):
    dead_action(1)
    action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "alive"}, idempotency_key="alive")
    response = client_for(viewer).get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    results = [str(a) for a in response.context["cl"].result_list]
    payloads = [a.payload["message"] for a in response.context["cl"].result_list]
    assert shown in payloads, results
    if hidden:
        assert hidden not in payloads


def test_action_changelist__search_by_exact_idempotency_key(viewer):
    action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"}, idempotency_key="launch-7")
    action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"}, idempotency_key="launch-70")
    response = client_for(viewer).get(f"{CHANGELIST}?q=launch-7")
    assert [a.idempotency_key for a in response.context["cl"].result_list] == ["launch-7"]


def test_action_changelist__search_matches_the_whole_key_exactly_and_says_so(viewer):
    for key in ("launch-7", "launch-70", "Launch-7"):
        action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": key}, idempotency_key=key)
    dead_action(1)  # its last error says "nope"
    client = client_for(viewer)

    def found(term: str) -> list[str]:
        return [a.idempotency_key for a in client.get(CHANGELIST, {"q": term}).context["cl"].result_list]

    assert found("launch-7") == ["launch-7"]
    assert found(" Launch-7 ") == ["Launch-7"]
    assert found("launch") == []  # a prefix is not the key
    assert found("LAUNCH-7") == []  # nor is another case of it
    assert found("nope") == []  # words of the last error are not searched (filter by status instead)
    page = client.get(CHANGELIST).content.decode()
    assert "The exact idempotency key (case-sensitive, the whole key), or an action id (42 or #42)." in page


@pytest.mark.parametrize("prefix", ["", "#"])
def test_action_changelist__search_by_action_id(prefix, viewer):
    wanted = dead_action(1)
    dead_action(2)
    response = client_for(viewer).get(CHANGELIST, {"q": f"{prefix}{wanted.pk}"})
    assert [a.pk for a in response.context["cl"].result_list] == [wanted.pk]
    assert client_for(viewer).get(CHANGELIST, {"q": "9" * 30}).status_code == 200  # no bigint overflow


@pytest.mark.postgres_only
def test_action_changelist__big_unfiltered_table_shows_an_estimate_it_never_counts(superuser, analyse, monkeypatch):
    monkeypatch.setattr("orchestration.admin.records.COUNT_CAP", 5)
    many_dead(8)
    analyse()
    with CaptureQueriesContext(connection) as queries:
        page = client_for(superuser).get(CHANGELIST).content.decode()  # may run bulk actions: "select all"
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert "about 8 actions (estimated, not counted)" in page
    assert "An estimate from PostgreSQL's table statistics" in page
    assert "Select all matching actions (more than 5; not counted)" in page
    assert "Select all 5" not in page and "8 actions" not in page.replace("about 8 actions", "")


def test_action_changelist__filtered_list_counts_up_to_the_cap_never_estimates(viewer, analyse, monkeypatch):
    monkeypatch.setattr("orchestration.admin.records.COUNT_CAP", 5)
    many_dead(8)
    analyse()
    with CaptureQueriesContext(connection) as queries:
        page = client_for(viewer).get(CHANGELIST, {"status__exact": "DLQ"}).content.decode()
    assert "more than 5 actions (not counted further)" in page and "estimated" not in page
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1 and "LIMIT 6" in counts[0].upper()
    assert "ORDER BY" not in counts[0].upper()  # any index may answer the count; the order is irrelevant


def test_action_changelist__never_counts_more_than_the_cap(viewer, settings, monkeypatch):
    monkeypatch.setattr("orchestration.admin.records.COUNT_CAP", 5)
    many_dead(8)
    with CaptureQueriesContext(connection) as queries:
        page = client_for(viewer).get(CHANGELIST).content.decode()
    assert "more than 5 actions" in page
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 6" in sql.upper() for sql in counts), counts
    assert COUNT_CAP == 10_000


def test_action_changelist__exact_count_below_the_cap(viewer):
    many_dead(3)
    assert "3 actions" in client_for(viewer).get(CHANGELIST).content.decode()


def test_action_change__pretty_payload_logs_and_verify_links(viewer):
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "twitter", "message": "<b>hi</b>"})
    sha = artifact_write(ref="post_social/a.txt", content=b"proof")
    log = log_write(
        action_id=action.pk, message="PROOF: would post", artifact_ref="post_social/a.txt", artifact_sha256=sha
    )
    log_write(action_id=action.pk + 1, message="another action's log")
    page = client_for(viewer).get(change_url(action)).content.decode()
    assert '<pre class="aol-json">{\n  &quot;message&quot;: &quot;&lt;b&gt;hi&lt;/b&gt;&quot;,' in page
    assert "PROOF: would post" in page and "another action&#x27;s log" not in page
    verify = reverse("admin:orchestration_action_verify_artifact", args=[action.pk, log.pk])
    assert f'href="{verify}"' in page


def verify(client, action, log):
    url = reverse("admin:orchestration_action_verify_artifact", args=[action.pk, log.pk])
    response = client.get(url, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_verify_artifact__intact_file_matches(viewer):
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    sha = artifact_write(ref="post_social/ok.txt", content=b"proof bytes")
    log = log_write(action_id=action.pk, message="m", artifact_ref="post_social/ok.txt", artifact_sha256=sha)
    assert "verified: its SHA-256 still matches" in verify(client_for(viewer), action, log)[0]


def test_verify_artifact__tampered_file_does_not_match(viewer, artifacts_dir):
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    sha = artifact_write(ref="post_social/t.txt", content=b"proof bytes")
    (artifacts_dir / "post_social" / "t.txt").write_bytes(b"edited afterwards")
    log = log_write(action_id=action.pk, message="m", artifact_ref="post_social/t.txt", artifact_sha256=sha)
    assert "does NOT match" in verify(client_for(viewer), action, log)[0]


def test_verify_artifact__missing_file_is_reported(viewer):
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    sha = hashlib.sha256(b"x").hexdigest()
    log = log_write(action_id=action.pk, message="m", artifact_ref="post_social/gone.txt", artifact_sha256=sha)
    assert "MISSING" in verify(client_for(viewer), action, log)[0]


def test_verify_artifact__database_store_row_verified_tampered_and_missing(viewer, settings):
    settings.AOL_ARTIFACT_STORE = "database"
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    stored = artifact_put(name="post_social/db.txt", content=b"proof bytes in the database")
    artifact_rows_write(pending=[stored.pending])
    log = log_write(action_id=action.pk, message="m", artifact_ref=stored.ref, artifact_sha256=stored.sha256)
    assert "verified: its SHA-256 still matches" in verify(client_for(viewer), action, log)[0]
    Artifact.objects.update(content=b"edited in the table")
    assert "does NOT match" in verify(client_for(viewer), action, log)[0]
    Artifact.objects.all().delete()
    assert "MISSING from the database (aol_artifacts)" in verify(client_for(viewer), action, log)[0]


def test_verify_artifact__log_of_another_action_is_404(viewer):
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    log = log_write(action_id=action.pk + 100, message="m", artifact_ref="a", artifact_sha256="b")
    url = reverse("admin:orchestration_action_verify_artifact", args=[action.pk, log.pk])
    assert client_for(viewer).get(url).status_code == 404


def test_verify_artifact__needs_view_permission(non_staff, django_user_model):
    staff = django_user_model.objects.create_user("nobody", password="x", is_staff=True)
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    log = log_write(action_id=action.pk, message="m", artifact_ref="a", artifact_sha256="b")
    url = reverse("admin:orchestration_action_verify_artifact", args=[action.pk, log.pk])
    assert client_for(staff).get(url).status_code == 403


def test_action_admin__is_read_only(superuser):
    action = dead_action()
    client = client_for(superuser)
    assert client.get(reverse("admin:orchestration_action_add")).status_code == 403
    assert client.get(reverse("admin:orchestration_action_delete", args=[action.pk])).status_code == 403
    client.post(change_url(action), {"status": "SUCCESS"})
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ


# --- bulk admin actions -------------------------------------------------------------------------------


def run_action(client, name, ids, *, select_across=False, query="", **extra):
    data = {"action": name, "_selected_action": ids, "select_across": "1" if select_across else "0", "index": "0"}
    return client.post(f"{CHANGELIST}{query}", {**data, **extra})


def confirm(client, name, ids, reason, *, select_across=False, query=""):
    data = {
        "action": name,
        "_selected_action": ids,
        "select_across": "1" if select_across else "0",
        "confirm": "yes",
        "reason": reason,
    }
    return client.post(f"{CHANGELIST}{query}", data, follow=True)


def test_bulk_retry__confirmation_page_says_how_many_then_retries(operator):
    dead = [dead_action(n) for n in range(3)]
    pending, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "p"})
    ids = [a.pk for a in dead] + [pending.pk]
    client = client_for(operator)
    page = run_action(client, "retry_dlq", ids)
    assert page.status_code == 200
    assert "<strong>3</strong> actions will go back to PENDING" in page.content.decode()
    assert Action.objects.filter(status=ActionStatus.DLQ).count() == 3  # nothing yet
    response = confirm(client, "retry_dlq", ids, "provider is back")
    assert f"Retry: 3 actions retried; 1 skipped, not DLQ or NEEDS_REVIEW: #{pending.pk} is PENDING." in (
        response.content.decode()
    )
    assert Action.objects.filter(status=ActionStatus.PENDING, attempts=0).count() == 4
    assert AuditEntry.objects.get(verb="retry DLQ").reason == "provider is back"
    assert LogEntry.objects.filter(user=operator).count() == 3


def test_bulk_retry__confirmation_without_reason_changes_nothing(operator):
    action = dead_action()
    response = confirm(client_for(operator), "retry_dlq", [action.pk], "")
    assert "Give a reason" in response.content.decode()
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ


def test_bulk_discard__marks_failed(operator):
    action = dead_action()
    confirm(client_for(operator), "discard_dlq", [action.pk], "obsolete")
    action.refresh_from_db()
    assert action.status == ActionStatus.FAILED


def test_bulk_requeue_now__makes_waiting_actions_due(operator):
    from django.utils import timezone

    later = timezone.now() + timezone.timedelta(days=1)
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"}, not_before=later)
    confirm(client_for(operator), "requeue_now", [action.pk], "launch moved up")
    assert Action.objects.due().filter(pk=action.pk).exists()


def test_bulk_retry__nothing_eligible_is_a_warning(operator):
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    response = client_for(operator).post(
        CHANGELIST, {"action": "retry_dlq", "_selected_action": [action.pk], "index": "0"}, follow=True
    )
    assert "none of the chosen actions is DLQ" in response.content.decode()


def test_bulk_retry__whole_filter_is_capped_with_a_confirmation(operator):
    ids = many_dead(MAX_BULK_ACTIONS + 5)
    client = client_for(operator)
    query = "?status__exact=DLQ"
    page = run_action(client, "retry_dlq", ids[:1], select_across=True, query=query).content.decode()
    assert f"<strong>{MAX_BULK_ACTIONS}</strong> actions will go back to PENDING" in page
    assert f"More than {MAX_BULK_ACTIONS} match" in page
    response = confirm(client, "retry_dlq", ids[:1], "mass retry", select_across=True, query=query)
    assert f"Retry: {MAX_BULK_ACTIONS} actions retried. More matched" in response.content.decode()
    assert Action.objects.filter(status=ActionStatus.DLQ).count() == 5
    assert set(Action.objects.filter(status=ActionStatus.DLQ).values_list("pk", flat=True)) == set(ids[-5:])


def test_bulk_actions__hidden_from_and_refused_for_staff_without_permission(viewer):
    action = dead_action()
    client = client_for(viewer)
    page = client.get(CHANGELIST).content.decode()
    assert "retry_dlq" not in page
    response = confirm(client, "retry_dlq", [action.pk], "sneaky")
    assert response.status_code == 200
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ
    assert denied_entries("retry DLQ").get().actor == "viewer"
    assert not ExecutionLog.objects.filter(action_id=action.pk).exists()


@pytest.mark.parametrize(("name", "after"), [("retry_dlq", ActionStatus.PENDING), ("discard_dlq", ActionStatus.FAILED)])
def test_bulk_retry_and_discard__needs_review_actions_like_dlq_ones(name, after, operator):
    parked = dead_action(1)
    Action.objects.filter(pk=parked.pk).update(status=ActionStatus.NEEDS_REVIEW)
    client = client_for(operator)
    page = run_action(client, name, [parked.pk]).content.decode()
    assert "<strong>1</strong> action will" in page
    response = confirm(client, name, [parked.pk], "checked the mailbox: it was never sent")
    assert "1 action " in response.content.decode()
    parked.refresh_from_db()
    assert parked.status == after
    entry = AuditEntry.objects.get(verb={"retry_dlq": "retry DLQ", "discard_dlq": "discard DLQ"}[name])
    assert entry.before["statuses"] == {"NEEDS_REVIEW": 1}
