"""Schedule periods: instants in UTC, a cron expression's matching minutes or multiples of an interval since the epoch.

Pure arithmetic on datetimes (croniter), so that models, services and checks can all use it.
"""

from datetime import UTC, datetime, timedelta

from croniter import CroniterBadDateError, CroniterError, croniter
from django.utils import timezone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
CRON_HELP = "Use five fields: minute hour day-of-month month day-of-week (e.g. '0 9 * * 1-5'), or @hourly/@daily."


def cron_problem(expression: str) -> str:
    """Why ``expression`` is not a cron expression we accept, or ''."""
    text = expression.strip()
    if not text:
        return "The cron expression is empty."
    if text.startswith("@"):
        return "" if text.lower() in CRON_ALIASES else f"{text!r} is not a known alias. {CRON_HELP}"
    fields = text.split()
    if len(fields) != 5:
        return f"{text!r} has {len(fields)} field(s), not 5. {CRON_HELP}"
    try:
        croniter(text, EPOCH)
    except (CroniterError, ValueError, KeyError) as exc:
        return f"{text!r} is not a valid cron expression ({exc}). {CRON_HELP}"
    try:
        period_next(cron=text, interval_seconds=None, after=timezone.now())
    except (CroniterError, ValueError) as exc:  # e.g. '0 0 31 2 *': valid fields, but no such date
        return f"{text!r} never matches a date ({exc}). {CRON_HELP}"
    return ""


def _interval_index(moment: datetime, interval_seconds: int) -> int:
    """How many whole intervals since the epoch ``moment`` is (floor)."""
    return (moment - EPOCH) // timedelta(seconds=interval_seconds)


def period_next(*, cron: str, interval_seconds: int | None, after: datetime) -> datetime:
    """The first period start strictly after ``after``."""
    if cron:
        return croniter(cron.strip(), after.astimezone(UTC)).get_next(datetime).astimezone(UTC)
    if interval_seconds is None:
        raise ValueError("A period needs a cron expression or an interval.")
    index = _interval_index(after, interval_seconds) + 1
    return EPOCH + timedelta(seconds=interval_seconds) * index


def periods_due(
    *, cron: str, interval_seconds: int | None, first: datetime, now: datetime, limit: int
) -> tuple[list[datetime], bool]:
    """The newest ``limit`` period starts p with first <= p <= now, oldest first; and whether older
    due periods were left out."""
    if now < first:
        return [], False
    if not cron:
        if interval_seconds is None:
            raise ValueError("A period needs a cron expression or an interval.")
        step = timedelta(seconds=interval_seconds)
        newest = _interval_index(now, interval_seconds)
        oldest = -(-(first - EPOCH) // step)  # ceil: the first period start at or after `first`
        start = max(oldest, newest - limit + 1)
        return [EPOCH + step * index for index in range(start, newest + 1)], start > oldest
    found: list[datetime] = []
    walker = croniter(cron.strip(), (now + ONE_MICROSECOND).astimezone(UTC))
    while True:
        try:
            moment = walker.get_prev(datetime).astimezone(UTC)
        except CroniterBadDateError:
            break
        if moment < first:
            return found[::-1], False
        if len(found) == limit:
            return found[::-1], True
        found.append(moment)
    return found[::-1], False
