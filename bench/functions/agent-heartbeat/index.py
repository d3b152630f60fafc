"""The real `agent-heartbeat` function, without its per-address rate limit: the benchmark
measures how fast heartbeats are ingested, which the limit would cap by design."""

from dataclasses import replace
from pathlib import Path

from aerelion.functions import load_function

function = replace(
    load_function(Path(__file__).resolve().parents[3] / "functions" / "agent-heartbeat"),
    rate_limit=None,
)
