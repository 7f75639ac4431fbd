"""No output anywhere contains the database password or the OpenAI key.

Both are set to unique canary strings; every command, page, JSON endpoint, log line and stored
error this issue adds is exercised against a reachable database, an unreachable one and an
unusable URL, and the canaries must appear nowhere. (With trust authentication PostgreSQL accepts
any password, so on PostgreSQL the reachable URL carries the canary too; SQLite has no password,
so there it is carried by the unreachable and unusable URLs only.)
"""

import json
import os
import re
import subprocess
import sys
from http.cookies import SimpleCookie
from io import StringIO
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client, override_settings

from orchestration.adapters.artifacts import artifact_path
from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog, TickLedger
from orchestration.services.approval import action_approve, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from orchestration.web.health import STAFF_COOKIE
from tests.conftest import ROOT, test_database_url
from tests.webhook_server import SECRET, SECRET_ENV

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


#: A credential's path through the AOL is the same on both databases: those tests run once, on SQLite.
#: The first test, whose canary is also the database password, runs on PostgreSQL.
credentials_once = pytest.mark.sqlite_only

UNREACHABLE = f"postgres://postgres:{DB_CANARY}@127.0.0.1:1/aicmo"
ASYNC = f"postgresql+asyncpg://aicmo:{DB_CANARY}@127.0.0.1:5432/aicmo"


def run_manage(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return f"$ manage.py {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"


@pytest.mark.postgres_only  # its database canary is the PostgreSQL password; the key canary's path is the same
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


@credentials_once
def test_secrets__an_api_token_secret_appears_only_where_it_is_created(
    start_web_server, daemon_env, django_user_model, caplog
):
    """The secret is printed by ``aol_token create`` and nowhere else: not in the server's or daemon's
    logs, the API's answers (good or refused), the admin, the console, the audit trail or the tables."""
    created = subprocess.run(
        [sys.executable, "manage.py", "aol_token", "create", "canary-planner", "--scopes", "read,propose,cancel"],
        cwd=ROOT,
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("aol_")
    seen: list[str] = [created.stderr]
    staff = django_user_model.objects.create_superuser("canary-root", password="x" * 12)
    session_client = Client()
    session_client.force_login(staff)
    cookies = f"sessionid={session_client.cookies['sessionid'].value}"
    server = start_web_server(reachable_url())
    bearer = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    body = b'{"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": "canary"}}'
    status, text, _ = server.request("/api/v1/actions", headers=bearer, data=body)
    assert status == 201
    seen.append(text)
    for path in ("/api/v1/actions", "/api/v1/actions/1", "/api/v1/status", "/api/v1/actions/1/artifact"):
        seen.append(server.request(path, headers=bearer)[1])
    seen.append(server.request("/api/v1/control/pause", headers=bearer, data=b"{}")[1])  # 403: no pause scope
    seen.append(server.request("/api/v1/actions", headers=bearer, data=b"{not json")[1])
    # Near misses, which a careless error message would echo.
    for wrong in (secret + "x", secret[:-1], secret.upper()):
        seen.append(server.request("/api/v1/status", headers={"Authorization": f"Bearer {wrong}"})[1])
    seen.append(run_manage(["run_aol_daemon", "--proof", "--ticks", "2"], daemon_env))
    seen.append(run_manage(["aol_token", "list"], daemon_env))
    seen.append(run_manage(["aol_token", "revoke", "canary-planner", "--reason", "canary"], daemon_env))
    seen.append(server.request("/api/v1/status", headers=bearer)[1])  # refused: revoked
    for path in (
        "/admin/orchestration/apitoken/",
        "/admin/orchestration/apitoken/1/change/",
        "/admin/orchestration/auditentry/",
        "/admin/orchestration/action/1/change/",
        "/console/",
        "/console/status.json",
    ):
        seen.append(server.request(path, headers={"Cookie": cookies})[1])
    seen.append(server.output())
    seen.extend(str(row) for row in AuditEntry.objects.values())
    seen.extend(ExecutionLog.objects.values_list("message", flat=True))
    seen.extend(str(row) for row in Action.objects.values())
    seen.append(caplog.text)

    everything = "\n".join(seen)
    assert "canary-planner" in everything and "revoked" in everything  # the calls really ran
    assert secret not in everything, "the token's secret leaked:\n" + "\n".join(
        line for line in everything.splitlines() if secret in line
    )
    assert secret[12:30] not in everything  # nor a part of it beyond the shown prefix


@credentials_once
def test_secrets__a_webhook_signing_secret_appears_in_no_output(webhook_server, daemon_env, django_user_model):
    """The secret signs requests (the receiver verifies them) but is in no artifact, log, page, JSON or row:
    through daemon processes, a refusal by the receiver, the console, the admin and ``manage.py check``."""
    control_set_proof_mode(enabled=False, actor="ops", reason="canary")
    endpoints = {"crm": webhook_server.endpoint()}
    env = {
        **daemon_env,
        "AOL_WEBHOOKS": json.dumps(endpoints),
        SECRET_ENV: SECRET,
        "AOL_APPROVAL_REQUIRED_TYPES": "WEBHOOK",
    }
    with override_settings(AOL_WEBHOOKS=endpoints):
        for key in ("canary-ok", "canary-refused"):
            action_enqueue(action_type="WEBHOOK", payload={"endpoint": "crm", "event": "canary"}, idempotency_key=key)
    seen = [run_manage(["run_aol_daemon", "--ticks", "1"], env)]  # the PROOF runs for approval
    with override_settings(AOL_WEBHOOKS=endpoints):
        for action in Action.objects.all():
            review = approval_review(action=action)
            action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="canary")
    webhook_server.script.extend(["ok", 401])
    seen.append(run_manage(["run_aol_daemon", "--ticks", "1"], env))
    seen.append(run_manage(["check"], env))
    assert len(webhook_server.events) == 1  # signed with the secret and verified by the receiver
    staff = django_user_model.objects.create_superuser("canary-hooks", password="x" * 12)
    client = Client()
    client.force_login(staff)
    with override_settings(AOL_WEBHOOKS=endpoints, WEBHOOK_SECRETS={SECRET_ENV: SECRET}):
        for action in Action.objects.all():
            seen.append(client.get(f"/console/actions/{action.pk}/").content.decode())
            seen.append(client.get(f"/admin/orchestration/action/{action.pk}/change/").content.decode())
            seen.append(client.get(f"/console/approvals/{action.pk}/").content.decode())
            seen.append(artifact_path(action.approval_artifact_ref).read_text())
        seen.append(client.get("/console/").content.decode())
        seen.append(client.get("/console/status.json").content.decode())
    seen.extend(ExecutionLog.objects.values_list("message", flat=True))
    seen.extend(str(row) for row in Action.objects.values())
    everything = "\n".join(seen)
    assert "answered 401" in everything and "evt-1" in everything  # the calls really ran
    assert SECRET not in everything, "the webhook secret leaked:\n" + "\n".join(
        line for line in everything.splitlines() if SECRET in line
    )


@credentials_once
def test_secrets__a_connected_accounts_credentials_appear_in_no_output(daemon_env, django_user_model, caplog):
    """Added through the command (standard input), the credentials are in no output of the commands, the
    daemon, the admin, the console or its JSON, the audit trail or the database row (encrypted at rest)."""
    from cryptography.fernet import Fernet

    from orchestration.models import Account

    token = "acct-token-CANARY-6d2e"
    key = Fernet.generate_key().decode()
    env = {**daemon_env, "AOL_CREDENTIALS_KEYS": key}

    def manage(args: list[str], stdin: str = "") -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True
        )
        return f"$ manage.py {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"

    seen = [
        manage(
            ["aol_accounts", "add", "brand-main", "--platform", "mastodon", "--base-url", "https://social.example"],
            stdin=f'{{"access_token": "{token}"}}',
        ),
        manage(["aol_accounts", "add", "brand-main", "--platform", "mastodon"], stdin=f'{{"access_token": "{token}"}}'),
        manage(
            ["aol_accounts", "add", "brand-main", "--platform", "x"], stdin=f'{{"access_token": "{token}", "bad": ""}}'
        ),
        manage(["aol_accounts", "add", "brand-main", "--platform", "x"], stdin=f'{{"access_token": "{token}"}}'),
        manage(["aol_accounts", "list"]),
        manage(["aol_accounts", "rotate-keys"]),
        manage(["check"]),
        manage(["run_aol_daemon", "--proof", "--ticks", "1"]),
    ]
    assert Account.objects.filter(name="brand-main").exists(), seen[0]
    staff = django_user_model.objects.create_superuser("canary-accounts", password="x" * 12)
    client = Client()
    client.force_login(staff)
    account = Account.objects.get()
    with override_settings(AOL_CREDENTIALS_KEYS=[key]):
        for path in (
            "/admin/orchestration/account/",
            f"/admin/orchestration/account/{account.pk}/change/",
            "/admin/orchestration/auditentry/",
            "/console/",
            "/console/status.json",
            "/console/audit/",
        ):
            seen.append(client.get(path).content.decode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM aol_accounts")
        seen.append(repr(cursor.fetchall()))
    seen.extend(str(row) for row in AuditEntry.objects.values())
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "encrypted: access_token" in everything and "already exists" in everything  # the calls really ran
    assert token not in everything and key not in everything, "a credential or key leaked:\n" + "\n".join(
        line for line in everything.splitlines() if token in line or key in line
    )


@credentials_once
def test_secrets__verify_and_retract_show_no_credential_even_when_the_network_quotes_it(
    local_network, daemon_env, django_user_model, caplog
):
    """``aol_accounts verify`` (a command, a process and the admin action) and retract (console, admin, command):
    the token goes to the network and nowhere else, also when the network's error quotes the request."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from orchestration.models import Account
    from tests.platform_servers.local_network import CREDENTIALS_KEY, TOKEN, account_connect, posted_action

    seen: list[str] = []
    account_connect(local_network)
    staff = django_user_model.objects.create_superuser("canary-verify", password="x" * 12)
    client = Client()
    client.force_login(staff)
    manage = str(ROOT / "tests" / "platform_servers" / "manage_local_network.py")
    env = {**daemon_env, "AOL_CREDENTIALS_KEYS": CREDENTIALS_KEY}
    for answer in ("ok", "echo", 401):
        local_network.script.extend([answer] * 4)
        out = StringIO()
        try:
            call_command("aol_accounts", "verify", "brand-main", stdout=out, stderr=out)
        except CommandError as exc:
            out.write(str(exc))
        seen.append(out.getvalue())
        done = subprocess.run(
            [sys.executable, manage, "aol_accounts", "verify", "brand-main"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        seen.append(f"{done.returncode}\n{done.stdout}\n{done.stderr}")
        account = Account.objects.get(name="brand-main")
        data = {"action": "verify_accounts", "_selected_action": [account.pk], "index": "0"}
        seen.append(client.post("/admin/orchestration/account/", data, follow=True).content.decode())
        local_network.script.clear()
    posted = posted_action(local_network)
    local_network.script.append("echo")  # the delete fails with the request quoted in the error
    data = {"queue-action_ids": str(posted.pk), "queue-reason": "canary", "return_to": f"/console/actions/{posted.pk}/"}
    seen.append(client.post("/console/actions/retract/", data, follow=True).content.decode())
    seen.append(client.post("/console/actions/retract/", data, follow=True).content.decode())  # now it works
    seen.append(client.get(f"/admin/orchestration/action/{posted.pk}/change/").content.decode())
    seen.extend(str(row) for row in ExecutionLog.objects.values())
    seen.extend(str(row) for row in AuditEntry.objects.values())
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "ok: acts as @brand" in everything and "bad token" in everything  # the calls really ran
    assert "(RuntimeError)" in everything and "1 action retracted" in everything
    assert any(TOKEN in request.authorization for request in local_network.requests)  # it was sent …
    assert TOKEN not in everything, "a credential leaked:\n" + "\n".join(  # … and shown nowhere
        line for line in everything.splitlines() if TOKEN in line
    )


@credentials_once
def test_secrets__the_approval_webhooks_secret_and_url_token_appear_in_no_output(
    webhook_server, smtp_server, daemon_env, django_user_model, caplog
):
    """Approval notifications sign with AOL_APPROVAL_WEBHOOK_SECRET and POST to a URL whose query holds a token
    (as chat webhooks' do): neither is in the email, the webhook's body, the daemon's output, the execution log,
    the console or ``manage.py check``, also when the receiver refuses the signature."""
    from orchestration.models import ActionStatus
    from tests.fake_adapters import FLOW_ADAPTERS

    url_token = "hookpathCANARY93b1"
    approver = django_user_model.objects.create_superuser("canary-approver", "approver@example.com", "x" * 12)
    control_set_proof_mode(enabled=False, actor="ops", reason="canary")
    env = {
        **daemon_env,
        **smtp_server.env(),
        "AOL_EXTRA_ADAPTERS": ",".join(FLOW_ADAPTERS),
        "AOL_APPROVAL_WEBHOOK_URL": f"{webhook_server.url}?token={url_token}",
        "AOL_APPROVAL_WEBHOOK_SECRET": SECRET,
    }
    seen = []
    for key, secret in (("canary-ok", SECRET), ("canary-refused", "wrong-secret-for-the-receiver")):
        action_enqueue(
            action_type="POST_SOCIAL", payload={"platform": "x", "message": "canary post"}, idempotency_key=key
        )
        seen.append(run_manage(["run_aol_daemon", "--ticks", "3"], {**env, "AOL_APPROVAL_WEBHOOK_SECRET": secret}))
    seen.append(run_manage(["check"], {**env, "AOL_APPROVAL_WEBHOOK_SECRET": ""}))
    assert Action.objects.filter(status=ActionStatus.AWAITING_APPROVAL).count() == 2
    assert len(webhook_server.events) == 1  # signed with the secret and verified by the receiver
    seen.extend(message.data.decode() for message in smtp_server.messages)
    seen.extend(request.body.decode() + repr(request.headers) for request in webhook_server.requests)
    seen.extend(ExecutionLog.objects.values_list("message", flat=True))
    client = Client()
    client.force_login(approver)
    for action in Action.objects.all():
        seen.append(client.get(f"/console/approvals/{action.pk}/").content.decode())
        seen.append(client.get(f"/console/actions/{action.pk}/").content.decode())
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "approvers notified" in everything and "failed (HTTP 401)" in everything  # the calls really ran
    assert "orchestration.W096" in everything
    assert SECRET not in everything and url_token not in everything, "leaked:\n" + "\n".join(
        line for line in everything.splitlines() if SECRET in line or url_token in line
    )


@credentials_once
def test_secrets__a_mastodon_access_token_appears_in_no_output(mastodon_server, daemon_env, django_user_model, caplog):
    """The token authorizes the posts (the local instance checks it) but is in no artifact, log, page, JSON or
    row: through daemon processes (PROOF for approval, a post, a 401 with a revoked token), verify's messages,
    the console and the admin."""
    from cryptography.fernet import Fernet

    from orchestration.adapters.platforms import PLATFORMS
    from orchestration.exceptions import AccountCheckFailed
    from orchestration.models import Account
    from orchestration.services.accounts import account_add
    from tests.platform_servers.mastodon import TOKEN

    revoked = "mastodon-revoked-CANARY-40c1"
    key = Fernet.generate_key().decode()
    env = {**daemon_env, "AOL_CREDENTIALS_KEYS": key}
    control_set_proof_mode(enabled=False, actor="ops", reason="canary")
    with override_settings(AOL_CREDENTIALS_KEYS=[key]):
        for name, token in (("brand-main", TOKEN), ("brand-old", revoked)):
            account_add(
                name=name, platform="mastodon", base_url=mastodon_server.url, credentials={"access_token": token},
                actor="ops",
            )  # fmt: skip
            action_enqueue(
                action_type="POST_SOCIAL",
                payload={"platform": "mastodon", "account": name, "message": "canary post"},
                idempotency_key=f"canary-{name}",
            )
    seen = [run_manage(["run_aol_daemon", "--ticks", "1"], env)]  # the PROOF runs for approval
    for action in Action.objects.all():
        review = approval_review(action=action)
        action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="canary")
    seen.append(run_manage(["run_aol_daemon", "--ticks", "1"], env))
    seen.append(run_manage(["check"], env))
    assert len(mastodon_server.posts) == 1  # the good token was accepted by the instance
    for account, token in (
        (Account.objects.get(name="brand-old"), revoked),
        (Account.objects.get(name="brand-main"), "x"),
    ):
        try:
            PLATFORMS["mastodon"].verify(account=account, credentials={"access_token": token}, timeout=5)
        except AccountCheckFailed as exc:
            seen.append(str(exc))
    staff = django_user_model.objects.create_superuser("canary-mastodon", password="x" * 12)
    client = Client()
    client.force_login(staff)
    with override_settings(AOL_CREDENTIALS_KEYS=[key]):
        for action in Action.objects.all():
            seen.append(client.get(f"/console/actions/{action.pk}/").content.decode())
            seen.append(client.get(f"/admin/orchestration/action/{action.pk}/change/").content.decode())
            seen.append(client.get(f"/console/approvals/{action.pk}/").content.decode())
            seen.append(artifact_path(action.approval_artifact_ref).read_text())
        seen.append(client.get("/console/status.json").content.decode())
    seen.extend(ExecutionLog.objects.values_list("message", flat=True))
    seen.extend(str(row) for row in Action.objects.values())
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "was refused (revoked, expired or mistyped)" in everything and "/api/v1/statuses" in everything
    for canary in (TOKEN, revoked, key):
        assert canary not in everything, "a Mastodon credential leaked:\n" + "\n".join(
            line for line in everything.splitlines() if canary in line
        )


@credentials_once
def test_secrets__a_bluesky_app_password_and_its_session_tokens_appear_in_no_output(
    settings, bluesky_server, start_daemon, caplog
):
    """A Bluesky account through PROOF, a refused app password, REAL (with a dropped answer), verify and
    retract: neither the app password nor any session JWT the PDS gave is in a log line, a stored error, an
    execution log, an artifact, the daemon's output or an exception's message."""
    import logging

    from cryptography.fernet import Fernet

    from orchestration.adapters.platforms import platform_get
    from orchestration.credentials import account_credentials
    from orchestration.exceptions import AOLError
    from orchestration.services.accounts import account_add, account_change
    from tests.platform_servers.bluesky import APP_PASSWORD, HANDLE

    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    key = Fernet.generate_key().decode()
    settings.AOL_CREDENTIALS_KEYS = [key]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    wrong = "wrong-app-password-CANARY-91"
    account = account_add(
        name="brand-sky",
        platform="bluesky",
        base_url=bluesky_server.url,
        credentials={"identifier": HANDLE, "app_password": wrong},
        actor="ops",
    )
    env = {"AOL_CREDENTIALS_KEYS": key, "AOL_APPROVAL_REQUIRED_TYPES": ""}
    seen = []
    payload = {"platform": "bluesky", "account": "brand-sky", "message": "Hi @alice.bsky.social #canary"}
    action_enqueue(action_type="POST_SOCIAL", payload=payload, idempotency_key="sky-proof")
    seen.append(run_daemon_ticks(start_daemon, env, proof=True))
    control_set_proof_mode(enabled=False, actor="ops", reason="canary")
    refused, _ = action_enqueue(action_type="POST_SOCIAL", payload=payload, idempotency_key="sky-refused")
    seen.append(run_daemon_ticks(start_daemon, env))
    account_change(
        name="brand-sky",
        actor="ops",
        reason="right one",
        credentials={"identifier": HANDLE, "app_password": APP_PASSWORD},
    )
    bluesky_server.faults["com.atproto.repo.createRecord"].append("drop")
    posted, _ = action_enqueue(action_type="POST_SOCIAL", payload=payload, idempotency_key="sky-posted")
    seen.append(run_daemon_ticks(start_daemon, env, ticks=12))
    posted.refresh_from_db()
    refused.refresh_from_db()
    account.refresh_from_db()  # its new credentials
    bluesky = platform_get("bluesky")
    for credentials in ({"identifier": HANDLE, "app_password": wrong}, account_credentials(account=account)):
        try:
            seen.append(repr(bluesky.verify(account=account, credentials=credentials, timeout=5)))
        except AOLError as exc:
            seen.append(str(exc))
    bluesky.retract(
        account=account, credentials=account_credentials(account=account), remote_id=posted.remote_id, timeout=5
    )
    seen.extend(ExecutionLog.objects.values_list("message", flat=True))
    seen.extend(str(row) for row in Action.objects.values())
    for ref in ExecutionLog.objects.exclude(artifact_ref="").values_list("artifact_ref", flat=True):
        seen.append(artifact_path(ref).read_text())
    seen.append(caplog.text)
    everything = "\n".join(seen)
    # the calls really ran: the refused password, the post after a dropped answer, verify, retract
    assert "createSession answered 401" in everything and posted.status == ActionStatus.SUCCESS, everything
    assert refused.status == ActionStatus.DLQ and f"Identity(handle='{HANDLE}'" in everything
    assert bluesky_server.deleted == [posted.remote_id] and bluesky_server.issued
    for secret in (APP_PASSWORD, wrong, key, *bluesky_server.issued):
        assert secret not in everything, "a Bluesky credential leaked:\n" + "\n".join(
            line for line in everything.splitlines() if secret in line
        )


def run_daemon_ticks(start_daemon, env: dict[str, str], *, proof: bool = False, ticks: int = 1) -> str:
    """A real daemon process for ``ticks`` ticks; its whole output."""
    daemon = start_daemon(*(["--proof"] if proof else []), "--ticks", str(ticks), env=env)
    assert daemon.wait(timeout=120) == 0, daemon.output()
    return daemon.output()


@credentials_once
def test_secrets__x_and_linkedin_tokens_appear_in_no_output(x_server, linkedin_server, daemon_env, django_user_model):
    """Posting, refusals that echo the token back, a lost answer and its lookup, an X token refresh (confidential
    client), through daemon processes: the tokens, refresh tokens and client secret are in no artifact, log, page,
    JSON or row."""
    from cryptography.fernet import Fernet

    from orchestration.services.accounts import account_add
    from tests.platform_servers import linkedin, x

    key = Fernet.generate_key().decode()
    env = {
        **daemon_env,
        "AOL_CREDENTIALS_KEYS": key,
        "AOL_APPROVAL_REQUIRED_TYPES": "POST_SOCIAL",
        "AOL_MAX_ACTIONS_PER_TICK": "10",
    }
    control_set_proof_mode(enabled=False, actor="ops", reason="canary")
    with override_settings(AOL_CREDENTIALS_KEYS=[key]):
        x_server.client_secret = x.CLIENT_SECRET
        x_credentials = {
            "access_token": x.TOKEN,
            "refresh_token": x.REFRESH_TOKEN,
            "client_id": x.CLIENT_ID,
            "client_secret": x.CLIENT_SECRET,
        }
        li_credentials = {"access_token": linkedin.TOKEN, "person_id": linkedin.PERSON_ID}
        account_add(name="brand-x", platform="x", base_url=x_server.base_url, credentials=x_credentials, actor="o")
        account_add(
            name="brand-li",
            platform="linkedin",
            base_url=linkedin_server.base_url,
            credentials=li_credentials,
            actor="o",
        )
        for account, platform in (("brand-x", "x"), ("brand-li", "linkedin")):
            for number in range(3):
                action_enqueue(
                    action_type="POST_SOCIAL",
                    payload={"platform": platform, "account": account, "message": f"canary post {number}"},
                    idempotency_key=f"canary-{platform}-{number}",
                )
    seen = [run_manage(["run_aol_daemon", "--ticks", "1"], env)]  # the PROOF runs for approval
    with override_settings(AOL_CREDENTIALS_KEYS=[key]):
        for action in Action.objects.order_by("pk"):
            review = approval_review(action=action)
            action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="canary")
    # X: a 401 renews the token and repeats the post, which meets a second 401 (DLQ); LinkedIn's 401 is final.
    x_server.script.extend(["ok", 401, 401, "drop"])
    linkedin_server.script.extend(["ok", 401, "drop"])
    seen.append(run_manage(["run_aol_daemon", "--ticks", "1"], env))
    seen.append(run_manage(["aol_accounts", "list"], env))
    staff = django_user_model.objects.create_superuser("canary-social", password="x" * 12)
    client = Client()
    client.force_login(staff)
    with override_settings(AOL_CREDENTIALS_KEYS=[key]):
        for action in Action.objects.all():
            seen.append(client.get(f"/console/actions/{action.pk}/").content.decode())
            seen.append(client.get(f"/admin/orchestration/action/{action.pk}/change/").content.decode())
            seen.append(artifact_path(action.approval_artifact_ref).read_text())
        seen.append(client.get("/console/").content.decode())
        seen.append(client.get("/console/status.json").content.decode())
    seen.extend(ExecutionLog.objects.values_list("message", flat=True))
    seen.extend(str(row) for row in Action.objects.values())
    seen.extend(str(row) for row in AuditEntry.objects.values())
    everything = "\n".join(seen)
    statuses = sorted(Action.objects.values_list("status", flat=True))
    assert statuses == sorted([ActionStatus.SUCCESS] * 4 + [ActionStatus.DLQ] * 2), everything[-3000:]
    assert "<redacted>" in everything  # the refusals did echo the token, and it was blanked out
    assert len(x_server.token_requests()) == 1 and x_server.issued  # the X token was refreshed
    x_secrets = (x.REFRESH_TOKEN, x.CLIENT_SECRET, *x_server.issued, *x_server.refresh_tokens)
    for token in (x.TOKEN, linkedin.TOKEN, *x_secrets):
        assert token not in everything, "a platform token leaked:\n" + "\n".join(
            line for line in everything.splitlines() if token in line
        )
