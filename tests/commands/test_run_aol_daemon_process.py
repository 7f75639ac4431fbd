"""run_aol_daemon as a real process: ticks, lease exclusivity, kill flag, signals, SIGKILL recovery."""

import signal

import pytest

from orchestration.models import Action, ActionStatus, ExecutionLog, Lease, TickLedger
from orchestration.services.control import control_kill
from orchestration.services.queue import action_enqueue
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_aol_daemon__two_proof_ticks_print_success_and_exit_0(start_daemon):
    daemon = start_daemon("--proof", "--ticks", "2")
    assert daemon.wait() == 0, daemon.output()
    out = daemon.output()
    assert "[AOL] Database initialized:" in out
    assert "[AOL] PROOF mode: True" in out
    assert "[AOL] Max ticks: 2" in out
    assert "[AOL Tick 0] SUCCESS | Actions: 0 attempted, 0 succeeded" in out
    assert "[AOL Tick 1] SUCCESS | Actions: 0 attempted, 0 succeeded" in out
    assert TickLedger.objects.count() == 2
    assert Lease.objects.get().owner == ""  # released on exit
