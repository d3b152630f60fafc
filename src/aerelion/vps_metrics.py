"""Hostinger's metrics of a VM, reduced to the `vitality` the client dashboard shows.

The API answers a MetricsCollection: per metric `{unit, usage: {<unix time>: value}}`
with a point every few minutes — CPU in %, RAM and disk in bytes, traffic in bytes per
interval, uptime in milliseconds. The vitality is the newest point of each, with RAM and
disk against the VM's size and traffic as a rate over the interval between the last two
points. Missing or malformed series count as 0, as the original's defaults did.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MB = 1024 * 1024
GB = 1024 * MB
DEFAULT_INTERVAL_S = 300  # the API's usual spacing, when a series has one point
WINDOW_S = 900  # how far back a fetch asks (a few points)


def _points(collection: Mapping[str, Any], name: str) -> list[tuple[int, float]]:
    """(unix time, value) of a series, oldest first; malformed entries are skipped."""
    series = collection.get(name)
    usage = series.get("usage") if isinstance(series, Mapping) else None
    if not isinstance(usage, Mapping):
        return []
    points = []
    for stamp, value in usage.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        try:
            points.append((int(stamp), float(value)))
        except (TypeError, ValueError):
            continue
    return sorted(points)


def _newest(points: list[tuple[int, float]]) -> float:
    return points[-1][1] if points else 0.0


def _rate_mbps(points: list[tuple[int, float]]) -> float:
    """Megabits per second over the newest interval."""
    if not points:
        return 0.0
    interval = points[-1][0] - points[-2][0] if len(points) > 1 else DEFAULT_INTERVAL_S
    return round(points[-1][1] * 8 / max(interval, 1) / 1_000_000, 3)


def _percent(used: float, total: float) -> float:
    return round(min(100.0, used / total * 100), 2) if total > 0 else 0.0


def vitality(
    collection: Mapping[str, Any],
    *,
    memory_mb: int | None,
    disk_mb: int | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The vitality of one VM (without `status`, which is the instance's own)."""
    series = {
        name: _points(collection, name)
        for name in (
            "cpu_usage",
            "ram_usage",
            "disk_space",
            "incoming_traffic",
            "outgoing_traffic",
            "uptime",
        )
    }
    stamps = [points[-1][0] for points in series.values() if points]
    sampled = datetime.fromtimestamp(max(stamps), UTC) if stamps else (now or datetime.now(UTC))
    ram_used = _newest(series["ram_usage"])
    disk_used = _newest(series["disk_space"])
    ram_total_mb = float(memory_mb or 0)
    disk_total_gb = float(disk_mb or 0) / 1024
    return {
        "cpu_percent": round(min(100.0, max(0.0, _newest(series["cpu_usage"]))), 2),
        "ram_percent": _percent(ram_used / MB, ram_total_mb),
        "ram_used_mb": round(ram_used / MB, 1),
        "ram_total_mb": round(ram_total_mb, 1),
        "disk_percent": _percent(disk_used / GB, disk_total_gb),
        "disk_used_gb": round(disk_used / GB, 2),
        "disk_total_gb": round(disk_total_gb, 2),
        "network_in_mbps": _rate_mbps(series["incoming_traffic"]),
        "network_out_mbps": _rate_mbps(series["outgoing_traffic"]),
        "uptime_seconds": int(_newest(series["uptime"]) // 1000),
        "sampled_at": sampled.isoformat().replace("+00:00", "Z"),
    }
