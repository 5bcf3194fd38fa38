"""The `Calendar` port over croniter: 5-field cron in an IANA time zone.

croniter iterates in the zone of the datetime it is given, so a `30 2 * * *` schedule
in Europe/Paris fires at 02:30 local time all year: on the spring-forward day, when
02:30 does not exist, it fires at 03:00; on the fall-back day, once. Times cross this
port as epoch milliseconds (UTC): only this module knows about zones.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from treadle.domain.errors import InvalidParameter

# The nicknames croniter knows, minus `@reboot`, which has no fire times.
_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameter(
            f"Unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris."
        ) from None


def _at(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class CronCalendar:
    def check(self, cron: str, timezone: str) -> None:
        zone = _zone(timezone)
        text = cron.strip()
        if text.startswith("@"):
            if text.lower() not in _MACROS:
                raise InvalidParameter(
                    f"Invalid cron expression {cron!r}: the nicknames are "
                    + ", ".join(sorted(_MACROS))
                    + "."
                )
        elif len(text.split()) != 5:
            raise InvalidParameter(
                f"Invalid cron expression {cron!r}: it needs 5 fields (minute hour "
                f"day-of-month month day-of-week), it has {len(text.split())}."
            )
        try:
            croniter(text, datetime.now(zone))
        except (CroniterError, ValueError, KeyError) as exc:
            raise InvalidParameter(f"Invalid cron expression {cron!r}: {exc}.") from None
        now = _ms(datetime.now(zone))
        if self.next_after(text, timezone, now) is None:
            raise InvalidParameter(f"Cron expression {cron!r} never fires.")

    def next_after(self, cron: str, timezone: str, after_ms: int) -> int | None:
        zone = _zone(timezone)
        # croniter works in whole seconds: from the second holding `after_ms`, the next
        # fire time is strictly later (fire times are whole minutes).
        start = _at(after_ms - after_ms % 1000, zone)
        try:
            return _ms(croniter(cron.strip(), start).get_next(datetime))
        except CroniterBadDateError:
            return None

    def fire_times(
        self, cron: str, timezone: str, since_ms: int, upto_ms: int, limit: int
    ) -> list[int]:
        zone = _zone(timezone)
        # One second past `upto_ms`: get_prev excludes its start, and `upto_ms` counts.
        start = _at(upto_ms - upto_ms % 1000, zone) + timedelta(seconds=1)
        found: list[int] = []
        walk = croniter(cron.strip(), start)
        while len(found) < limit:
            try:
                t = _ms(walk.get_prev(datetime))
            except CroniterBadDateError:
                break
            if t < since_ms:
                break
            found.append(t)
        return found
