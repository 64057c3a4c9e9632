"""Latency recording in HDR histograms (the ``hdrhistogram`` package): whole run and per interval.

Values are microseconds from 1 us to one hour, kept to 3 significant digits for the whole run (the
report's percentiles and its encoded histogram) and 2 per interval (the plots over time).
"""

from __future__ import annotations

from typing import Any, Final

from hdrh.histogram import HdrHistogram

__all__ = ["PERCENTILES", "LatencyRecorder"]

LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
"""The percentiles every summary carries (plus ``max``)."""
_DISTRIBUTION: Final = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100)


def _key(percentile: float) -> str:
    return f"p{percentile:g}"


def _ms(us: float) -> float:
    return round(us / 1000.0, 3)


class LatencyRecorder:
    """One latency (e.g. submit, end-to-end) of a run: an HDR histogram overall and per interval."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.overall = HdrHistogram(LOWEST_US, HIGHEST_US, 3)
        self._intervals: dict[int, HdrHistogram] = {}

    def record(self, value_us: int, at_s: float | None = None, *, overall: bool = True) -> None:
        """Record one latency; ``at_s`` (seconds since the run's start) files it under its interval.

        ``overall=False`` keeps it out of the whole-run figures (e.g. during the warm-up).
        """
        value = min(max(int(value_us), LOWEST_US), HIGHEST_US)
        if overall:
            self.overall.record_value(value)
        if at_s is not None and at_s >= 0:
            slot = int(at_s // self.interval_s)
            histogram = self._intervals.get(slot)
            if histogram is None:
                histogram = self._intervals[slot] = HdrHistogram(LOWEST_US, HIGHEST_US, 2)
            histogram.record_value(value)

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return int(self.overall.get_total_count())

    def summary(self) -> dict[str, Any]:
        """``count``, ``mean``, the ``PERCENTILES`` and ``max``, in milliseconds (None when empty)."""
        if not self.count:
            return {"count": 0, "mean": None, **{_key(p): None for p in PERCENTILES}, "max": None}
        return {
            "count": self.count,
            "mean": _ms(self.overall.get_mean_value()),
            **{_key(p): _ms(self.overall.get_value_at_percentile(p)) for p in PERCENTILES},
            "max": _ms(self.overall.get_max_value()),
        }

    def percentile_ms(self, percentile: float) -> float | None:
        """One percentile of the whole run in ms (None when empty); 100 is the max."""
        if not self.count:
            return None
        if percentile >= 100:
            return _ms(self.overall.get_max_value())
        return _ms(self.overall.get_value_at_percentile(percentile))

    def series(self, intervals: int, percentiles: tuple[float, ...] = (50.0, 99.0)) -> dict[str, list[Any]]:
        """Per interval 0..intervals-1: each percentile in ms (None for an empty interval)."""
        out: dict[str, list[Any]] = {_key(p): [] for p in percentiles}
        for slot in range(intervals):
            histogram = self._intervals.get(slot)
            for p in percentiles:
                value = (
                    _ms(histogram.get_value_at_percentile(p))
                    if histogram is not None and histogram.get_total_count()
                    else None
                )
                out[_key(p)].append(value)
        return out

    def distribution(self) -> list[list[float]]:
        """``[percentile, ms]`` pairs from 0 to 100 (the latency distribution plot)."""
        if not self.count:
            return []
        return [[p, self.percentile_ms(p) or 0.0] for p in _DISTRIBUTION]

    def encoded(self) -> str | None:
        """The whole-run histogram in HdrHistogram's compressed base64 form (None when empty)."""
        if not self.count:
            return None
        data = self.overall.encode()
        return data.decode("ascii") if isinstance(data, bytes) else str(data)
