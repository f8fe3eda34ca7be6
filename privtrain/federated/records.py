"""Numbers out of Flower's records: a record's values may also be text, bytes or lists, so each read is checked."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flwr.app import ConfigRecord, MetricRecord


def scalar(record: ConfigRecord | MetricRecord, key: str, default: float | None = None) -> int | float:
    """The number stored under ``key``.

    Args:
        record: a message's config or metrics.
        key: the entry to read.
        default: returned when ``key`` is absent (None: the entry is required).

    Returns:
        The number as stored (a bool counts as the int it is).

    Raises:
        KeyError: ``key`` is absent and there is no default.
        TypeError: the entry is not a number (a peer sent text, bytes or a list).
    """
    if default is not None and key not in record:
        return default
    value = record[key]
    if not isinstance(value, (int, float)):
        raise TypeError(f"Flower record entry {key!r} is a {type(value).__name__}, not a number")
    return value
