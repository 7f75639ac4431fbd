"""Prometheus metrics for /metrics, read from the database at scrape time.

Every number comes from the AOL tables when Prometheus asks, so it is right whichever
process (daemon, console, a shell) did the work and survives restarts. About six small queries
per scrape; the counts use the (status, action_type) index.
"""

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.models import Count

from orchestration.dbclock import DbNow
from orchestration.models import ATTENTION_STATUSES, OPEN_STATUSES, TERMINAL_STATUSES

if TYPE_CHECKING:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

#: Statuses still in the queue (waiting for the daemon or running), and those an action's run ended
#: in (by outcome; DLQ and NEEDS_REVIEW wait for a person). Together they are every status.
QUEUED = tuple(status for status in OPEN_STATUSES if status not in ATTENTION_STATUSES)
FINISHED = (*TERMINAL_STATUSES, *ATTENTION_STATUSES)


class AolCollector:
    """A custom collector: ``registry.register(AolCollector())``, then ``generate_latest(registry)``."""

    def collect(self) -> Iterator["Metric"]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        started = time.monotonic()
        up = GaugeMetricFamily("aol_database_up", "1 when the AOL tables could be read for this scrape.")
        try:
            families = list(self._families(GaugeMetricFamily, CounterMetricFamily))
        except (DatabaseError, ImproperlyConfigured):
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        duration = GaugeMetricFamily("aol_scrape_duration_seconds", "Time spent reading the metrics from the database.")
        duration.add_metric([], time.monotonic() - started)
        yield duration

    def _families(self, Gauge: type["GaugeMetricFamily"], Counter: type["CounterMetricFamily"]) -> Iterator["Metric"]:
        from orchestration.adapters import adapters_all
        from orchestration.models import Action, ControlFlags, TickLedger
        from orchestration.services.lease import lease_health

        counts = {
            (status, action_type): n
            for status, action_type, n in Action.objects.order_by()
            .values_list("status", "action_type")
            .annotate(n=Count("id"))
        }
        types = sorted(set(adapters_all()) | {action_type for _, action_type in counts})
        depth = Gauge(
            "aol_queue_depth",
            "Actions waiting or running, per status and action type.",
            labels=["status", "action_type"],
        )
        finished = Gauge(
            "aol_actions_finished",
            f"Actions that finished, per action type and outcome ({', '.join(FINISHED)}). A gauge: operators "
            "can requeue DLQ and NEEDS_REVIEW actions.",
            labels=["action_type", "outcome"],
        )
        for action_type in types:
            for status in QUEUED:
                depth.add_metric([status, action_type], counts.get((status, action_type), 0))
            for status in FINISHED:
                finished.add_metric([action_type, status], counts.get((status, action_type), 0))
        yield depth
        yield finished

        ticks = Counter("aol_ticks", "Daemon ticks recorded in the ledger, per status.", labels=["status"])
        by_status = dict(TickLedger.objects.order_by().values_list("status").annotate(n=Count("id")))
        for choice in TickLedger._meta.get_field("status").choices or ():
            ticks.add_metric([choice[0]], by_status.get(choice[0], 0))
        yield ticks

        last = (
            TickLedger.objects.annotate(db_now=DbNow())
            .order_by("-started_at", "-id")
            .values("started_at", "finished_at", "db_now")
            .first()
        )
        if last is not None:
            age = Gauge("aol_last_tick_age_seconds", "Seconds since the last tick finished (database clock).")
            age.add_metric([], max(0.0, (last["db_now"] - last["finished_at"]).total_seconds()))
            took = Gauge("aol_last_tick_duration_seconds", "How long the last tick took.")
            took.add_metric([], (last["finished_at"] - last["started_at"]).total_seconds())
            yield age
            yield took

        lease = lease_health()
        held = Gauge("aol_lease_held", "1 when a daemon holds an unexpired lease.")
        held.add_metric([], 1 if lease.held else 0)
        yield held
        if lease.expires_in_seconds is not None:
            expiry = Gauge("aol_lease_expires_in_seconds", "Seconds until the lease expires (negative: expired).")
            expiry.add_metric([], lease.expires_in_seconds)
            yield expiry
        token = Gauge("aol_lease_token", "The lease's fencing token: it grows with every new holder.")
        token.add_metric([], lease.token)
        yield token

        flags = (
            ControlFlags.objects.filter(pk=ControlFlags.SINGLETON_ID).values("paused", "killed", "proof_mode").first()
        )
        flags = flags or {"paused": False, "killed": False, "proof_mode": True}
        for name, doc in (
            ("paused", "1 when operators paused the daemon."),
            ("killed", "1 when the kill flag is set."),
            ("proof_mode", "1 when the proof_mode flag is on (adapters write artifacts instead of acting)."),
        ):
            gauge = Gauge(f"aol_control_{name}", doc)
            gauge.add_metric([], 1 if flags.get(name) else 0)
            yield gauge
        yield self._environment(Gauge)
        yield from self._flow_control(Gauge, types)

    def _environment(self, Gauge: type["GaugeMetricFamily"]) -> "GaugeMetricFamily":
        """Whether an environment failure pauses claiming (the newest tick is BLOCKED), per reason."""
        from orchestration.models import TickLedger
        from orchestration.services.status import BLOCKED_ARTIFACT_STORE, environment_state

        last = TickLedger.objects.order_by("-started_at", "-id").only("status", "started_at", "notes").first()
        state = environment_state(last_tick=last)
        gauge = Gauge(
            "aol_environment_blocked",
            "1 when the daemon paused claiming because its environment failed (reason artifact_store: the "
            "artifacts directory is full, read-only or missing); attempts are not counted meanwhile.",
            labels=["reason"],
        )
        gauge.add_metric([BLOCKED_ARTIFACT_STORE], 1 if state["reason"] == BLOCKED_ARTIFACT_STORE else 0)
        return gauge

    def _flow_control(self, Gauge: type["GaugeMetricFamily"], types: Iterable[str]) -> Iterator["Metric"]:
        """Per-type pauses and rate-limit deferrals (docs/flow-control.md)."""
        from orchestration.models import Action, ActionTypePause

        paused = set(ActionTypePause.objects.values_list("action_type", flat=True))
        gauge = Gauge("aol_action_type_paused", "1 when operators paused this action type.", labels=["action_type"])
        for action_type in sorted(set(types) | paused):
            gauge.add_metric([action_type], 1 if action_type in paused else 0)
        yield gauge
        deferred = dict(Action.objects.deferred().order_by().values_list("action_type").annotate(n=Count("id")))
        gauge = Gauge(
            "aol_actions_deferred", "Waiting actions a rate limit pushed back, per action type.", labels=["action_type"]
        )
        for action_type in sorted(set(types) | set(deferred)):
            gauge.add_metric([action_type], deferred.get(action_type, 0))
        yield gauge


def metrics_render() -> tuple[bytes, str]:
    """The metrics page body and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AolCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
