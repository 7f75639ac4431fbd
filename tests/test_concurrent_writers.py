"""The console and the daemon write at the same time: no "database is locked", nothing lost."""

import threading

import pytest
from django.db import connection

from orchestration.models import Action, ActionStatus
from orchestration.services.control import control_pause, control_resume
from tests.conftest import wait_until
from tests.factories import post_social

pytestmark = pytest.mark.django_db(transaction=True)


def test_console_and_daemon__write_concurrently_without_lock_errors_and_every_action_runs_once(start_daemon):
    daemon = start_daemon("--max-actions", "20", "--interval", "0.05")
    daemon.wait_for_output("[AOL Tick 0]")
    errors: list[BaseException] = []

    def console(worker: int) -> None:
        try:
            for i in range(40):
                post_social(f"w{worker}-{i}")
                if worker == 0 and i % 8 == 0:
                    control_pause(actor="ops", reason="flip")
                    control_resume(actor="ops", reason="flop")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=console, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    wait_until(
        lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == 160,
        timeout=60,
        message="all 160 actions SUCCESS",
    )
    assert Action.objects.exclude(status=ActionStatus.SUCCESS).count() == 0
    assert set(Action.objects.values_list("attempts", flat=True)) == {1}  # each ran once
    assert daemon.proc.poll() is None, daemon.output()
    assert "locked" not in daemon.output() and "Traceback" not in daemon.output()
