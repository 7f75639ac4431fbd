"""check_sentinels in-process on the migrated test database: exit codes, JSON, each sentinel's verdict."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import Lease
from orchestration.sentinels import SENTINELS
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from orchestration.services.lease import lease_acquire_or_renew, lease_release

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("check_sentinels", *args, stdout=out, stderr=err, no_color=True)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def statuses(*args: str) -> tuple[int, dict[str, dict]]:
    code, out, _ = run("--json", *args)
    return code, {check["name"]: check for check in json.loads(out)["checks"]}


@pytest.fixture
def no_llm(settings):
    settings.OPENAI_API_KEY = ""
    return settings


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__without_llm_key_and_nothing_needing_it__skips_the_llm_and_passes_fail_on_warn(no_llm):
    code, out, _ = run("--fail-on-warn")
    assert code == 0, out
    assert "FAIL" not in out and "WARN" not in out
    llm_line = next(line for line in out.splitlines() if "orchestration.S008" in line)
    assert "SKIP" in llm_line and "OPENAI_API_KEY is not set" in llm_line and "no queued action needs it" in llm_line
    assert "0 failed" in out


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__without_llm_key_but_a_queued_draft__warns_and_fail_on_warn_exits_1(no_llm):
    action_enqueue(action_type="DRAFT_SOCIAL", payload={"platform": "x", "brief": "spring launch"})
    code, out, _ = run()
    assert code == 0, out
    llm_line = next(line for line in out.splitlines() if "orchestration.S008" in line)
    assert "WARN" in llm_line and "1 queued DRAFT_SOCIAL action(s) will fail" in llm_line
    assert "→ Optional. To enable: set OPENAI_API_KEY" in out


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__json_lists_every_check_with_stable_ids(no_llm):
    code, out, _ = run("--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert [c["id"] for c in data["checks"]] == [id for id, _, _ in SENTINELS]
    assert [c["id"] for c in data["checks"]][:3] == ["orchestration.S001", "orchestration.S002", "orchestration.S003"]
    by_name = {c["name"]: c for c in data["checks"]}
    for name in ("Python runtime", "Database connectivity", "AOL tables", "Migrations", "Status view"):
        assert by_name[name]["status"] == "pass", by_name[name]
    assert by_name["LLM"]["status"] == "skip"
    assert by_name["Daemon heartbeat"]["status"] == "skip"
    assert set(data["checks"][0]) == {"id", "name", "status", "detail", "advice", "seconds"}


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__fail_on_warn_exits_1_naming_the_warning(no_llm):
    action_enqueue(action_type="DRAFT_SOCIAL", payload={"platform": "x", "brief": "spring launch"})
    code, _, error = run("--fail-on-warn")
    assert code == 1
    assert "LLM" in error


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__llm_enabled_passes(settings):
    settings.OPENAI_API_KEY = "sk-sentinel-test"
    settings.AICMO_USE_LLM = True
    code, checks = statuses("--fail-on-warn")
    assert checks["LLM"]["status"] == "pass"
    assert "sk-sentinel-test" not in json.dumps(checks)
    assert code == 0


def test_check_sentinels__status_view_missing_is_a_warning_naming_the_url(no_llm, settings):
    settings.ROOT_URLCONF = "tests.urlconfs.empty"
    code, checks = statuses()
    assert checks["Status view"]["status"] == "warn"
    assert "orchestration:status" in checks["Status view"]["detail"]
    assert code == 0


@pytest.mark.urls("tests.urlconfs.status_broken")
def test_check_sentinels__status_view_that_breaks_fails(no_llm):
    code, checks = statuses()
    assert code == 1
    assert checks["Status view"]["status"] == "fail"
    assert "RuntimeError: template exploded" in checks["Status view"]["detail"]


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__require_daemon_fails_without_a_lease_holder(no_llm):
    code, checks = statuses("--require-daemon")
    assert code == 1
    assert checks["Daemon heartbeat"]["status"] == "fail"
    assert "run_aol_daemon" in checks["Daemon heartbeat"]["advice"]


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__require_daemon_passes_with_a_fresh_heartbeat(no_llm):
    result = lease_acquire_or_renew(owner="sentinel-host:42", ttl_seconds=30)
    code, checks = statuses("--require-daemon")
    assert checks["Daemon heartbeat"]["status"] == "pass", checks["Daemon heartbeat"]
    assert "sentinel-host:42" in checks["Daemon heartbeat"]["detail"]
    assert code == 0
    lease_release(owner="sentinel-host:42", token=result.token)
    assert Lease.objects.get().owner == ""
    code, checks = statuses("--require-daemon")
    assert checks["Daemon heartbeat"]["status"] == "fail"


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__artifacts_dir_under_a_file_fails(no_llm, settings, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    settings.AOL_ARTIFACTS_DIR = blocker / "artifacts"
    code, checks = statuses()
    assert code == 1
    assert checks["Artifacts directory"]["status"] == "fail"
    assert "AOL_ARTIFACTS_DIR" in checks["Artifacts directory"]["advice"]


@pytest.mark.urls("tests.urlconfs.status_ok")
def test_check_sentinels__real_mode_with_debug_fails_the_system_checks(no_llm, settings):
    settings.DEBUG = True
    settings.AOL_PROOF_MODE = False
    control_set_proof_mode(enabled=False, actor="test", reason="sentinel test")
    code, checks = statuses()
    assert code == 1
    assert checks["Django system checks"]["status"] == "fail"
    assert "orchestration.E030" in checks["Django system checks"]["detail"]


def test_sentinels__importing_them_loads_no_heavy_module():
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys, django; django.setup(); "
        "import orchestration.sentinels, orchestration.checks, orchestration.web.health, aicmo_site.urls; "
        # Not django.test: django-ninja (the planner API, an installed app) imports its signals module.
        "print(sorted(m for m in ('openai', 'prometheus_client', 'django.db.migrations.loader') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "aicmo_site.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
