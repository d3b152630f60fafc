"""Which database we talk to: `DATABASE_URL`, or the embedded PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aerelion.config import Settings
from aerelion.embedded import EmbeddedPostgres


def embedded_cluster(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.state_dir / "postgres")


@contextlib.contextmanager
def database_url(
    settings: Settings, explicit: str | None = None, *, keep_running: bool = False
) -> Iterator[str]:
    """The URL to use. Without DATABASE_URL the embedded cluster is started; it is
    stopped afterwards unless it was already running or `keep_running` is set."""
    url = explicit or settings.database_url
    if url:
        yield url
        return
    cluster = embedded_cluster(settings)
    was_running = cluster.running() is not None
    server = cluster.start()
    try:
        yield server.url()
    finally:
        if not (was_running or keep_running):
            cluster.stop()
