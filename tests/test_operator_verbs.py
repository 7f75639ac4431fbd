"""Every operator verb is offered where the verb table says (admin, console, command line), does the same
thing from each, and is refused without its permission."""

import re
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from orchestration.models import Action, ActionStatus, ActionTypePause, AuditEntry, ControlFlags
from orchestration.services import control
from orchestration.services.enqueue import action_enqueue
from orchestration.services.operator_verb import (
    ACTIONS,
    CONSOLE_ACTIONS,
    CONSOLE_ATTENTION,
    CONSOLE_FLAGS,
    CONSOLE_TYPES,
    FLAGS,
    OperatorVerb,
)
from orchestration.services.verbs import VERBS
from tests.console_fixtures import PASSWORD, client_for, superuser  # noqa: F401  (fixture)
from tests.platform_servers.local_network import posted_action

pytestmark = pytest.mark.django_db

FLAGS_CHANGE = reverse("admin:orchestration_controlflags_change", args=[ControlFlags.SINGLETON_ID])
ACTIONS_CHANGELIST = reverse("admin:orchestration_action_changelist")
CONSOLE_URL_NAMES = {
    CONSOLE_FLAGS: "control",
    CONSOLE_ATTENTION: "dlq",
    CONSOLE_TYPES: "type_pause",
    CONSOLE_ACTIONS: "queue_actions",
}
SURFACES = ("admin", "console", "cli")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def action_in(status: str) -> Action:
    action = action_enqueue(
        action_type="SLEEP", payload={"seconds": 0}, not_before=timezone.now() + timedelta(hours=1)
    )[0]
    Action.objects.filter(pk=action.pk).update(status=status)
    return action


def flags() -> ControlFlags:
    return control.control_flags_get()


_network: list = []  # the local network of the current test (retract calls it)


@pytest.fixture(autouse=True)
def network(request):
    """Retract deletes a post on a network: its scenarios get the local one (tests/platform_servers)."""
    if "retract" in request.node.name:
        _network.append(request.getfixturevalue("local_network"))
    yield
    _network.clear()


def retracted(action: Action) -> bool:
    return action.status == ActionStatus.RETRACTED and action.remote_id in _network[0].deleted


@dataclass
class Scenario:
    """How to make a verb's change possible, and how to see that it happened."""

    setup: object  # () -> the target action, or None
    done: object  # (target) -> bool


SCENARIOS = {
    "pause": Scenario(lambda: None, lambda _: flags().paused),
    "resume": Scenario(lambda: control.control_pause(actor="setup", reason="s") and None, lambda _: not flags().paused),
    "kill": Scenario(lambda: None, lambda _: flags().killed),
    "revive": Scenario(lambda: control.control_kill(actor="setup", reason="s") and None, lambda _: not flags().killed),
    "proof": Scenario(
        lambda: control.control_set_proof_mode(enabled=False, actor="setup", reason="s") and None,
        lambda _: flags().proof_mode,
    ),
    "real": Scenario(lambda: None, lambda _: not flags().proof_mode),
    "pause_type": Scenario(lambda: None, lambda _: ActionTypePause.objects.filter(action_type="SLEEP").exists()),
    "resume_type": Scenario(
        lambda: control.control_pause_type(action_type="SLEEP", actor="setup", reason="s") and None,
        lambda _: not ActionTypePause.objects.exists(),
    ),
    "retry": Scenario(lambda: action_in(ActionStatus.DLQ), lambda a: a.status == ActionStatus.PENDING),
    "discard": Scenario(lambda: action_in(ActionStatus.NEEDS_REVIEW), lambda a: a.status == ActionStatus.FAILED),
    "requeue": Scenario(lambda: action_in(ActionStatus.PENDING), lambda a: a.not_before <= timezone.now()),
    "cancel": Scenario(lambda: action_in(ActionStatus.PENDING), lambda a: a.status == ActionStatus.CANCELLED),
    "priority": Scenario(lambda: action_in(ActionStatus.PENDING), lambda a: a.priority == 9),
    "retract": Scenario(lambda: posted_action(_network[0]), retracted),
}


def offered(verb: OperatorVerb, surface: str) -> bool:
    return bool(getattr(verb, surface))


CASES = [(name, surface) for name, verb in VERBS.items() for surface in SURFACES if offered(verb, surface)]


def run_in_admin(client, verb: OperatorVerb, target: Action | None):
    if verb.target == FLAGS:
        current = flags()
        values = {"paused": current.paused, "killed": current.killed, "proof_mode": current.proof_mode}
        name, value = verb.flag
        values[name] = value
        data = {key: "on" for key, on in values.items() if on}
        return client.post(FLAGS_CHANGE, {**data, "reason": "r", "confirm_kill": "on", "confirm_real": "REAL"})
    data = {"action": verb.admin, "_selected_action": [target.pk], "select_across": "0", "index": "0"}
    return client.post(ACTIONS_CHANGELIST, {**data, "confirm": "yes", "reason": "r", "priority": "9"})


def run_in_console(client, verb: OperatorVerb, target: Action | None):
    url = reverse(f"orchestration:{CONSOLE_URL_NAMES[verb.console]}", args=[verb.slug])
    data = {
        CONSOLE_FLAGS: {f"{verb.name}-reason": "r", f"{verb.name}-confirm": "on", f"{verb.name}-confirmation": "REAL"},
        CONSOLE_TYPES: {"types-action_type": "SLEEP", "types-reason": "r"},
        CONSOLE_ATTENTION: {"dlq-scope": "selected", "dlq-action_ids": [target and target.pk], "dlq-reason": "r"},
        CONSOLE_ACTIONS: {"queue-action_ids": str(target and target.pk), "queue-reason": "r", "queue-priority": "9"},
    }[verb.console]
    return client.post(url, data)


def run_in_cli(verb: OperatorVerb, target: Action | None) -> str:
    command, *words = verb.cli.replace(" …", "").split()
    args = [{"TYPE": "SLEEP", "ID": str(target and target.pk)}.get(word, word) for word in words]
    out = StringIO()
    call_command(command, *args, "--reason", "r", "--actor", "cli:test", stdout=out)
    return out.getvalue()


def user_without(django_user_model, permission: str):
    """Staff with every orchestration permission but ``permission``."""
    user = django_user_model.objects.create_user("partial", password=PASSWORD, is_staff=True)
    codename = permission.split(".", 1)[1]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="orchestration").exclude(codename=codename)
    )
    return user


def observed(target: Action | None) -> object:
    if target is not None:
        target.refresh_from_db()
    return target


def test_verbs__every_verb_has_a_scenario_here_and_is_offered_somewhere():
    assert set(SCENARIOS) == set(VERBS)
    assert all(any(offered(verb, surface) for surface in SURFACES) for verb in VERBS.values())


def test_verbs__the_admin_offers_exactly_the_table_s_verbs_on_actions_with_their_descriptions(superuser):  # noqa: F811
    action_in(ActionStatus.DLQ)
    page = client_for(superuser).get(ACTIONS_CHANGELIST).content.decode()
    menu = page.split('name="action"')[1].split("</select>")[0]
    offered_names = set(re.findall(r'<option value="(\w+)"', menu))
    assert offered_names == {verb.admin for verb in VERBS.values() if verb.target == ACTIONS and verb.admin}
    for verb in VERBS.values():
        if verb.target == ACTIONS and verb.admin:
            assert f'<option value="{verb.admin}">{verb.description}</option>' in menu


#: The console view that offers each group's verbs (the one showing what they act on).
CONSOLE_VIEWS = {"control": "status", "dlq": "attention", "types": "schedules", "actions": "actions"}


def test_verbs__the_console_shows_every_console_verb_with_its_label(superuser):  # noqa: F811
    client = client_for(superuser)
    pages = {name: client.get(reverse(f"orchestration:{name}")).content.decode() for name in CONSOLE_VIEWS.values()}
    for verb in VERBS.values():
        if verb.console:
            page = pages[CONSOLE_VIEWS[verb.console]]
            assert reverse(f"orchestration:{CONSOLE_URL_NAMES[verb.console]}", args=[verb.slug]) in page
            assert f">{verb.label}</button>" in page


@pytest.mark.parametrize(("name", "surface"), CASES)
def test_verb__runs_from_each_interface_the_table_names(name, surface, superuser):  # noqa: F811
    verb, scenario = VERBS[name], SCENARIOS[name]
    target = scenario.setup()
    if surface == "cli":
        run_in_cli(verb, target)
    else:
        response = (run_in_admin if surface == "admin" else run_in_console)(client_for(superuser), verb, target)
        assert response.status_code == 302, response.content.decode()[:3000]
    assert scenario.done(observed(target))
    entry = AuditEntry.objects.filter(verb=verb.audit_verb).latest("id")
    assert entry.outcome == "DONE" and entry.reason == "r"


@pytest.mark.parametrize(("name", "surface"), [(n, s) for n, s in CASES if s != "cli"])
def test_verb__refused_without_its_permission(name, surface, django_user_model):
    verb, scenario = VERBS[name], SCENARIOS[name]
    target = scenario.setup()
    client = client_for(user_without(django_user_model, verb.permission))
    response = (run_in_admin if surface == "admin" else run_in_console)(client, verb, target)
    assert not scenario.done(observed(target))
    if surface == "console":
        assert response.status_code == 403
    if not (surface == "admin" and verb.target == FLAGS):  # there the field is read-only: nothing is posted
        denied = AuditEntry.objects.get(outcome="DENIED")
        assert (denied.verb, denied.after) == (verb.audit_verb, {"missing_permission": verb.permission})
