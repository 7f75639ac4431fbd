"""No output anywhere contains the database password or the OpenAI key.

Both are set to unique canary strings; every command, page, JSON endpoint, log line and stored
error this issue adds is exercised against a reachable database, an unreachable one and an
unusable URL, and the canaries must appear nowhere. (With trust authentication PostgreSQL accepts
any password, so on PostgreSQL the reachable URL carries the canary too; SQLite has no password,
so there it is carried by the unreachable and unusable URLs only.)
"""

import os
import re
import subprocess
import sys
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client

from orchestration.models import Action, ActionStatus, ExecutionLog, TickLedger
from orchestration.services.enqueue import action_enqueue
from orchestration.web.health import STAFF_COOKIE
from tests.conftest import ROOT, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

DB_CANARY = "dbpwCANARY7f3a9c"
KEY_CANARY = "sk-keyCANARYe41d07"
METRICS_TOKEN = "metrics-token-canary-test"
CANARIES = (DB_CANARY, KEY_CANARY)


def reachable_url() -> str:
    url = test_database_url()
    if connection.vendor == "postgresql":
        user = connection.settings_dict.get("USER") or "postgres"
        url = url.replace(f"://{user}@", f"://{user}:{DB_CANARY}@", 1)
        assert DB_CANARY in url
    return url


UNREACHABLE = f"postgres://postgres:{DB_CANARY}@127.0.0.1:1/aicmo"
ASYNC = f"postgresql+asyncpg://aicmo:{DB_CANARY}@127.0.0.1:5432/aicmo"


def run_manage(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return f"$ manage.py {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"


def test_secrets__canaries_appear_in_no_output(openai_server, start_web_server, daemon_env, django_user_model):
    openai_server.mode = "401"  # the server echoes the key it was sent, as real ones partly do
    seen: list[str] = []
    staff = django_user_model.objects.create_superuser("canary-admin", password="x" * 12)
    session_client = Client()
    session_client.force_login(staff)
    session = session_client.cookies["sessionid"].value
    action, _ = action_enqueue(
        action_type="DRAFT_SOCIAL", payload={"platform": "x", "brief": "canary brief"}, idempotency_key="canary"
    )
    llm = {
        "OPENAI_API_KEY": KEY_CANARY,
        "OPENAI_BASE_URL": openai_server.base_url,
        "AICMO_LLM_TIMEOUT_SECONDS": "2",
        "AICMO_LLM_MAX_RETRIES": "0",
        "AOL_METRICS_TOKEN": METRICS_TOKEN,
    }

    for url in (reachable_url(), UNREACHABLE, ASYNC):
        env = {**daemon_env, **llm, "DATABASE_URL": url}
        for args in (
            ["check_sentinels"],
            ["check_sentinels", "--json", "--require-daemon"],
            ["check"],
            ["run_aol_daemon", "--proof", "--ticks", "2"],
        ):
            seen.append(run_manage(args, env))
        if url == reachable_url():
            seen.append(run_manage(["aol_status"], env))
            seen.append(run_manage(["aol_status", "--json"], env))

        server = start_web_server(url, **llm)
        cookies = f"sessionid={session}"
        status, html, headers = server.request("/console/diagnostics/", headers={"Cookie": cookies})
        seen.append(html)
        if status == 200:
            jar = SimpleCookie()
            for header in headers.get_all("Set-Cookie"):
                jar.load(header)
            cookies += f"; {STAFF_COOKIE}={jar[STAFF_COOKIE].value}; csrftoken={jar['csrftoken'].value}"
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
            form = {"csrfmiddlewaretoken": csrf, "operation": "validate_url", "url": UNREACHABLE}
            status, html, _ = server.request(
                "/console/diagnostics/",
                headers={"Cookie": cookies, "Content-Type": "application/x-www-form-urlencoded"},
                data=urlencode(form).encode(),
            )
            assert status == 200 and "postgres://postgres:***@127.0.0.1:1/aicmo" in html
            seen.append(html)
            staff_cookies = cookies
            seen.append(
                server.request(f"/admin/orchestration/action/{action.pk}/change/", headers={"Cookie": cookies})[1]
            )
        else:
            cookies = staff_cookies  # the staff cookie from the visit while the database was up
        for path in ("/console/diagnostics/?run=sentinels", "/console/diagnostics/", "/readyz", "/healthz"):
            seen.append(server.request(path, headers={"Cookie": cookies})[1])
        seen.append(server.request("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})[1])
        seen.append(server.output())

    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ and "HTTP 401" in action.last_error  # the LLM path really ran
    assert any(r["authorization"] == f"Bearer {KEY_CANARY}" for r in openai_server.completions())
    seen.extend(Action.objects.values_list("last_error", flat=True))
    seen.extend(ExecutionLog.objects.values_list("message", flat=True))
    seen.extend(TickLedger.objects.values_list("notes", flat=True))

    everything = "\n".join(seen)
    assert "database unreachable" in everything and "cannot be used" in everything  # all three URLs ran
    for canary in CANARIES:
        assert canary not in everything, f"{canary} leaked:\n" + "\n".join(
            line for line in everything.splitlines() if canary in line
        )
    if os.environ.get("AICMO_CANARY_DUMP"):
        (ROOT / "test-output" / "canary-outputs.txt").write_text(everything)
