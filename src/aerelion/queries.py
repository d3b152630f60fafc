"""Every SQL statement the library runs, read from `queries.sql`.

Each query sits under a `-- name --` header followed by a one-line `-- description`.
Callers say `QUERIES["name"]`; a reviewer reads all the SQL in one file.
"""

from __future__ import annotations

import re
from importlib.resources import files

_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    parts = _HEADER.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        lines = [line for line in body.strip().splitlines() if not line.startswith("-- ")]
        queries[name] = "\n".join(lines).strip()
    return queries


QUERIES: dict[str, str] = parse(files("aerelion").joinpath("queries.sql").read_text())
