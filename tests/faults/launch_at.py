"""Run a management command at given wall-clock instants, with Django already set up.

``python tests/faults/launch_at.py <first unix time> <every seconds> <times> run_aol_daemon --proof``
imports everything and runs the system checks first, then runs the command at ``first``,
``first + every``, … (``times`` runs, one after the other), printing ``[launch] run=K exit=CODE``
after each. Several processes started this way begin each run within a few milliseconds of each
other: Python's start-up time, which varies by hundreds of milliseconds on a busy machine, is
paid once, before the first gate.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicmo_site.settings")

import django  # noqa: E402

django.setup()

from django.core import checks  # noqa: E402
from django.core.management import load_command_class  # noqa: E402


def main() -> None:
    first, every, times, name, *args = sys.argv[1:]
    checks.run_checks()
    for run in range(int(times)):
        command = load_command_class("orchestration", name)
        time.sleep(max(0.0, float(first) + run * float(every) - time.time()))
        try:
            command.run_from_argv(["manage.py", name, "--skip-checks", *args])
            code = 0
        except SystemExit as exc:  # run_from_argv exits with the CommandError's returncode
            code = exc.code if isinstance(exc.code, int) else 1
        print(f"[launch] run={run} exit={code}", flush=True)


if __name__ == "__main__":
    main()
