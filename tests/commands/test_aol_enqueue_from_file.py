"""``aol_enqueue --from-file``: JSON lines from a file or stdin, all or nothing on bad lines."""

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import Action
from tests.conftest import ROOT
from tests.factories import post_social

pytestmark = pytest.mark.django_db


def line(key: str | None, message: str = "hello", **extra) -> str:
    item = {"action_type": "POST_SOCIAL", "payload": {"platform": "twitter", "message": message}, **extra}
    if key is not None:
        item["idempotency_key"] = key
    return json.dumps(item)


def run(*args) -> str:
    out = StringIO()
    call_command("aol_enqueue", *args, stdout=out)
    return out.getvalue()


def test_aol_enqueue_from_file__queues_every_line_and_a_rerun_writes_nothing(jsonl):
    path = jsonl(line("a"), line("b"), line("later", not_before="2030-01-02T03:04:05"))
    assert f"3 action(s) read from {path}: 3 enqueued, 0 already existed" in run("--from-file", path)
    assert Action.objects.count() == 3
    later = Action.objects.get(idempotency_key="later")
    assert later.not_before.isoformat() == "2030-01-02T03:04:05+00:00"  # no offset given: UTC
    assert "0 enqueued, 3 already existed with the same payload" in run("--from-file", path)
    assert Action.objects.count() == 3


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([line("a"), "{not json", line("c")], "Nothing enqueued: line 2 is not valid JSON"),
        ([line("a"), "", line("c")], "Nothing enqueued: line 2 is empty"),
        ([line("a"), line("b", message="x" * 300)], r"Nothing enqueued: Line 2 \(key 'b'\): 'message' is 300"),
        ([line("a"), '["POST_SOCIAL"]'], "Nothing enqueued: Line 2: must be an object"),
        ([line("a"), line("b", not_before="soon")], "line 2: not_before 'soon' is not an ISO 8601 time"),
        ([line("k"), line("k", message="other")], "Nothing enqueued: Lines 1 and 2 both use the idempotency key 'k'"),
    ],
)
def test_aol_enqueue_from_file__a_bad_line_is_named_and_nothing_is_written(jsonl, lines, message):
    with pytest.raises(CommandError, match=message):
        call_command("aol_enqueue", "--from-file", jsonl(*lines))
    assert Action.objects.count() == 0


def test_aol_enqueue_from_file__conflicting_keys_are_listed_and_exit_1_the_rest_is_enqueued(jsonl):
    existing = post_social("taken", message="original")
    err = StringIO()
    with pytest.raises(CommandError, match="1 line\\(s\\) not enqueued") as raised:
        call_command("aol_enqueue", "--from-file", jsonl(line("new"), line("taken")), stdout=StringIO(), stderr=err)
    assert raised.value.returncode == 1
    assert f"Line 2: key 'taken' is already used by action #{existing.pk}" in err.getvalue()
    assert Action.objects.get(idempotency_key="taken").payload["message"] == "original"
    assert Action.objects.filter(idempotency_key="new").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["POST_SOCIAL", "--from-file", "x.jsonl"], "drop action_type"),
        (["--from-file", "x.jsonl", "--key", "k"], "drop --key"),
        ([], "Give an action type and --payload, or --from-file FILE"),
    ],
)
def test_aol_enqueue_from_file__mixed_arguments_are_a_usage_error(args, message):
    with pytest.raises(CommandError, match=message) as raised:
        call_command("aol_enqueue", *args)
    assert raised.value.returncode == 2


def test_aol_enqueue_from_file__a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*missing.jsonl: No such file"):
        call_command("aol_enqueue", "--from-file", str(tmp_path / "missing.jsonl"))


@pytest.mark.django_db(transaction=True)
def test_aol_enqueue_from_file__reads_standard_input_in_a_real_process(daemon_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "aol_enqueue", "--from-file", "-"],
        input=f"{line('s1')}\n{line('s2')}\n",
        cwd=ROOT,
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "2 action(s) read from standard input: 2 enqueued" in result.stdout
    assert sorted(Action.objects.values_list("idempotency_key", flat=True)) == ["s1", "s2"]
