"""Periods of a drift report: absolute dates, ISO date-times, relative windows.

Accepted forms (UTC unless a date-time carries its own offset):

- ``2024-01-01:2024-01-31``, the user guide's form: whole days, both included.
- ``2024-01-01T06:00Z/2024-01-02T06:00Z``: an ISO 8601 interval of dates or
  date-times; a date-time end is excluded, a date-only end includes its day.
- ``last 24h``: the window ending now (units ``m``, ``h``, ``d``, ``w``).
- ``previous 7d``: the window just before the *other* period (so ``last 24h``
  against ``previous 7d`` compares today with the week before it).

The aggregates are per hour, so a period covers the hours that *start* inside it.
An absolute window must therefore start and end on whole hours (a window of minutes
would be answered with its whole hour, data outside it included: it is refused, naming
the field). A relative window is answered with the hours that start inside it, the
current one up to now; the report's ``start`` and ``end`` are the window actually
read, and ``requested_start``/``requested_end`` what was asked when they differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from detwatch.contract.shapes.drift import DATE_PATTERN, MAX_PERIOD_LENGTH

__all__ = ["DriftInputError", "Period", "PeriodError", "parse_periods"]

NS_PER_SECOND = 1_000_000_000
HOUR_NS = 3600 * NS_PER_SECOND
MIN_YEAR, MAX_YEAR = 1970, 2261
"""Nanoseconds since the epoch must fit a signed 64-bit integer, as the stored times do."""

# ASCII digits and plain spaces only, without case folding: the OpenAPI pattern
# (an ECMA regular expression) must accept exactly the same strings.
_DATE = DATE_PATTERN
_DAYS = re.compile(rf"({_DATE}):({_DATE})")
_RELATIVE = re.compile(r"(last|previous) +([0-9]{1,6}) *(m|min|h|d|w)")
_UNITS = {"m": timedelta(minutes=1), "min": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "w": timedelta(weeks=1)}  # fmt: skip


class DriftInputError(ValueError):
    """An input of a drift report is invalid; ``field`` names it (the API answers 400 with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PeriodError(DriftInputError):
    """A period cannot be read; ``field`` is ``reference_period`` or ``current_period``."""


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in nanoseconds since the epoch, and the text it was read from."""

    text: str
    start_unix_nano: int
    end_unix_nano: int
    now_unix_nano: int | None = None
    """When the report was made: the current hour's cell holds data up to then only."""

    @property
    def first_hour_unix(self) -> int:
        """Start of the first hour the period covers (hours starting at or after ``start``)."""
        return -(-self.start_unix_nano // HOUR_NS) * 3600

    @property
    def hours(self) -> int:
        """How many hourly cells the period can hold."""
        last = -(-self.end_unix_nano // HOUR_NS)
        return max(0, last - self.first_hour_unix // 3600)

    @property
    def used_window(self) -> tuple[int, int]:
        """``[start, end)`` of the data the period's cells hold (whole hours; the current one up to now)."""
        start = self.first_hour_unix * NS_PER_SECOND
        end = -(-self.end_unix_nano // HOUR_NS) * HOUR_NS
        if self.now_unix_nano is not None:
            end = min(end, max(self.now_unix_nano, start))
        return start, max(start, end)

    def to_json(self) -> dict[str, object]:
        start, end = self.used_window
        out: dict[str, object] = {
            "period": self.text,
            "start": _rfc3339(start),
            "end": _rfc3339(end),
            "hours": self.hours,
        }
        if (start, end) != (self.start_unix_nano, self.end_unix_nano):
            out["requested_start"] = _rfc3339(self.start_unix_nano)
            out["requested_end"] = _rfc3339(self.end_unix_nano)
        return out


def _rfc3339(unix_nano: int) -> str:
    moment = datetime.fromtimestamp(unix_nano // NS_PER_SECOND, UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _nanos(moment: datetime) -> int:
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"years {MIN_YEAR} to {MAX_YEAR} only")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def _moment(text: str, *, end: bool) -> datetime:
    if re.fullmatch(_DATE, text):
        day = date.fromisoformat(text)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + timedelta(days=1) if end else moment
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _absolute(field: str, text: str) -> Period | None:
    days = _DAYS.fullmatch(text)
    parts = (days.group(1), days.group(2)) if days else tuple(text.split("/")) if "/" in text else None
    if parts is None:
        return None
    if len(parts) != 2:
        raise PeriodError(field, "an interval has one '/' between its start and its end")
    try:
        start, end = _nanos(_moment(parts[0], end=False)), _nanos(_moment(parts[1], end=True))
    except (ValueError, OverflowError) as exc:
        raise PeriodError(field, f"not a date or ISO date-time ({exc})") from None
    if end <= start:
        raise PeriodError(field, "ends before it starts")
    if start % HOUR_NS or end % HOUR_NS:
        whole = Period(text, start, end)
        first = whole.first_hour_unix * NS_PER_SECOND
        floor_start = start // HOUR_NS * HOUR_NS
        raise PeriodError(
            field,
            "the aggregates are per hour: start and end on whole hours (UTC), e.g."
            f" {_rfc3339(floor_start)}/{_rfc3339(-(-end // HOUR_NS) * HOUR_NS)};"
            f" as given it would be read from {_rfc3339(first)} in whole hours, data outside it included",
        )
    return Period(text, start, end)


def _relative(field: str, text: str) -> tuple[str, timedelta] | None:
    match = _RELATIVE.fullmatch(text)
    if match is None:
        return None
    length = int(match.group(2)) * _UNITS[match.group(3)]
    if length <= timedelta(0):
        raise PeriodError(field, "a window must be longer than zero")
    if length > timedelta(days=366 * 50):
        raise PeriodError(field, "a window of at most 50 years")
    return match.group(1), length


def parse_periods(reference: object, current: object, *, now_unix_nano: int) -> tuple[Period, Period]:
    """Read both periods (``previous`` ones relative to the other); raises :class:`PeriodError`."""
    texts = {"reference_period": reference, "current_period": current}
    absolute: dict[str, Period] = {}
    relative: dict[str, tuple[str, timedelta]] = {}
    for field, value in texts.items():
        if not isinstance(value, str) or not value or len(value) > MAX_PERIOD_LENGTH:
            raise PeriodError(field, "expected a string such as 2024-01-01:2024-01-31, or 'last 24h'")
        text = value
        found = _absolute(field, text)
        if found is not None:
            absolute[field] = found
            continue
        window = _relative(field, text)
        if window is None:
            raise PeriodError(
                field, "expected YYYY-MM-DD:YYYY-MM-DD, an ISO interval start/end, 'last 24h' or 'previous 7d'"
            )
        relative[field] = window
    for field, (word, length) in relative.items():
        if word == "last":
            absolute[field] = Period(str(texts[field]), now_unix_nano - _ns(length), now_unix_nano, now_unix_nano)
    for field, (word, length) in relative.items():
        if word == "previous":
            other = "current_period" if field == "reference_period" else "reference_period"
            if other not in absolute:
                raise PeriodError(field, "'previous' is relative to the other period, which is 'previous' too")
            end = absolute[other].start_unix_nano
            absolute[field] = Period(str(texts[field]), end - _ns(length), end, now_unix_nano)
    for field, period in absolute.items():
        if period.start_unix_nano < 0:
            raise PeriodError(field, "starts before 1970")
    return absolute["reference_period"], absolute["current_period"]


def _ns(length: timedelta) -> int:
    return (length.days * 86_400 + length.seconds) * NS_PER_SECOND + length.microseconds * 1000
