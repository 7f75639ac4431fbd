"""Where a drained action's time goes: ``python -m bench.profile_drain --n 2000 [--profile cprofile|none]``.

Runs in one process on the database of $DATABASE_URL (a fresh, migrated one: it queues ``--n``
due POST_SOCIAL actions with ``action_enqueue_many``), then:

1. the job body alone (the peers' ``proof_body``: artifact_write of ~220 bytes) ``--n`` times, no database;
2. the daemon's ``tick`` (PROOF, ``--n`` actions per tick, claim batches of AOL_CLAIM_BATCH_SIZE)
   until the queue is empty, optionally under cProfile;

and prints microseconds per action for both, the statements the drain sent per action (by kind),
and (with cProfile) the functions with the most own time and the most cumulative time. The two
loops run back to back in the same process, so their ratio is the figure to read on a busy machine.
"""

import argparse
import cProfile
import io
import json
import pstats
import resource
import sys
import time
from collections import Counter

import django


def cpu() -> float:
    """CPU seconds of this process so far, every thread, user and system (waits on fsync or the network excluded)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_drain")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--profile", choices=["cprofile", "none"], default="cprofile")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--null-body",
        action="store_true",
        help="PROOF adapter: SHA-256 its artifact, write no file; what is left is the daemon's own cost.",
    )
    args = parser.parse_args()
    django.setup()

    from django.conf import settings
    from django.db import connection

    from bench.body import proof_body
    from bench.lib import aol_payload
    from orchestration.daemon import Daemon, DaemonConfig
    from orchestration.models import Action, ActionStatus
    from orchestration.services.enqueue import action_enqueue_many

    if args.null_body:
        import hashlib

        import orchestration.adapters.post_social as post_social

        post_social.artifact_write = lambda *, ref, content: hashlib.sha256(content).hexdigest()  # type: ignore[assignment]

    items = [
        {"action_type": "POST_SOCIAL", "payload": aol_payload(i), "idempotency_key": f"profile-{i:07d}"}
        for i in range(args.n)
    ]
    action_enqueue_many(items=items)

    started, cpu_started = time.perf_counter(), cpu()
    for i in range(args.n):
        proof_body(key=f"body-{i:07d}", folder="profile_body")
    body = (time.perf_counter() - started) / args.n
    body_cpu = (cpu() - cpu_started) / args.n

    # The adapter's own path (validate, render, artifact_write), on the loop's thread, into another folder.
    from django.test import override_settings

    from orchestration.adapters import Attempt
    from orchestration.daemon.dispatch import _execute

    actions = list(Action.objects.order_by("id")[: args.n])
    with override_settings(AOL_ARTIFACTS_DIR=f"{settings.AOL_ARTIFACTS_DIR}-adapter"):
        started, cpu_started = time.perf_counter(), cpu()
        for action in actions:
            attempt = Attempt(idempotency_key=action.idempotency_key, number=1, proof=True, deadline=1e12)
            _execute(action, attempt)
        adapter = (time.perf_counter() - started) / args.n
        adapter_cpu = (cpu() - cpu_started) / args.n

    statements: Counter[str] = Counter()
    phases: Counter[str] = Counter()

    def timed(owner: object, name: str, label: str) -> None:
        """Add the wall time of every call of ``owner.name`` to ``phases[label]`` (no profiler overhead)."""
        original = getattr(owner, name)

        def wrapper(*a, **k):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                phases[label] += time.perf_counter() - began

        setattr(owner, name, wrapper)

    from django.db.backends.base.base import BaseDatabaseWrapper

    import orchestration.daemon.dispatch as dispatch
    from orchestration.daemon.runner import AdapterRunner

    timed(BaseDatabaseWrapper, "_commit", "COMMIT")
    timed(dispatch, "action_claim_due", "claim (action_claim_due)")
    timed(dispatch, "action_mark_success_many", "record successes (action_mark_success_many)")
    timed(AdapterRunner, "call", "hand-over and adapter (AdapterRunner.call)")
    timed(dispatch.Dispatcher, "_record_success", "queue the success and log it (_record_success)")
    timed(dispatch.Dispatcher, "dispatch", "dispatch, all of it")

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        words = sql.split(maxsplit=3)
        kind = " ".join(words[:1] + [w for w in words[1:3] if '"' in w][:1])
        if words[0] in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
            kind = words[0]  # without the savepoint's generated name
        statements[kind] += 1
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            phases[f"statement {kind}"] += time.perf_counter() - began

    daemon = Daemon(
        DaemonConfig.from_settings(force_proof=True, max_actions_per_tick=args.n, max_tick_seconds=3600.0),
        out=lambda line: None,
    )
    profiler = cProfile.Profile() if args.profile == "cprofile" else None
    number = 0
    started, cpu_started = time.perf_counter(), cpu()
    with connection.execute_wrapper(count):
        if profiler:
            profiler.enable()
        while Action.objects.filter(status__in=[ActionStatus.PENDING, ActionStatus.READY]).exists():
            daemon.tick(number)
            number += 1
        if profiler:
            profiler.disable()
    drain = (time.perf_counter() - started) / args.n
    drain_cpu = (cpu() - cpu_started) / args.n
    daemon.release_lease()
    daemon._runners.close()
    done = Action.objects.filter(status=ActionStatus.SUCCESS).count()
    print(f"actions done: {done} of {args.n} in {number} tick(s)", file=sys.stderr)
    print(f"job body alone: {body * 1e6:.0f} us/action; drain: {drain * 1e6:.0f} us/action", file=sys.stderr)
    print(f"adapter path alone (validate, render, write): {adapter * 1e6:.0f} us/action", file=sys.stderr)
    print(
        f"CPU per action: body {body_cpu * 1e6:.0f} us, adapter path {adapter_cpu * 1e6:.0f} us, "
        f"drain {drain_cpu * 1e6:.0f} us (daemon's own: {(drain_cpu - adapter_cpu) * 1e6:.0f} us)",
        file=sys.stderr,
    )
    print(f"ratio body/drain: {body / drain:.2f}", file=sys.stderr)
    for label, seconds in phases.most_common():
        print(f"  {seconds / args.n * 1e6:7.1f} us/action  {label}", file=sys.stderr)
    for kind, value in statements.most_common():
        print(f"  {value / args.n:.3f} {kind}", file=sys.stderr)
    if profiler:
        for order in ("tottime", "cumulative", "ncalls"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.top)
            print(out.getvalue(), file=sys.stderr)
    result = {
        "n": args.n,
        "body_us": body * 1e6,
        "adapter_us": adapter * 1e6,
        "drain_us": drain * 1e6,
        "body_cpu_us": body_cpu * 1e6,
        "adapter_cpu_us": adapter_cpu * 1e6,
        "drain_cpu_us": drain_cpu * 1e6,
        "phases_us": {label: seconds / args.n * 1e6 for label, seconds in phases.most_common()},
        "statements": {kind: value / args.n for kind, value in statements.most_common()},
    }
    if profiler:
        result["calls_per_action"] = pstats.Stats(profiler).total_calls / args.n  # type: ignore[attr-defined]
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
