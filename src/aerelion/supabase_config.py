"""`supabase/config.toml`'s per-function blocks, kept equal to the declared auth policies.

`verify_jwt = true` makes Supabase's gateway demand a project JWT before the function
runs, which would lock out webhooks, cron secrets and heartbeats; `false` on a JWT policy
would drop a layer the policy counts on. So each block must say exactly what the
function's policy implies (`Function.verify_jwt`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from aerelion.functions import Function


def function_blocks(path: Path) -> dict[str, dict[str, object]]:
    with path.open("rb") as handle:
        config = tomllib.load(handle)
    functions = config.get("functions", {})
    return {name: dict(block) for name, block in functions.items() if isinstance(block, dict)}


def render(function: Function) -> str:
    return (
        f"[functions.{function.name}]\n"
        f"# auth policy: {function.policy}\n"
        f"verify_jwt = {str(function.verify_jwt).lower()}\n"
    )


def problems(functions: list[Function], path: Path) -> list[str]:
    blocks = function_blocks(path)
    found = []
    for function in functions:
        block = blocks.get(function.name)
        if block is None:
            found.append(f"{path.name} has no block for {function.name}; add:\n{render(function)}")
            continue
        declared = block.get("verify_jwt", True)  # the CLI's default
        if declared != function.verify_jwt:
            found.append(
                f"[functions.{function.name}] verify_jwt = {str(declared).lower()}, but its "
                f"policy `{function.policy}` needs {str(function.verify_jwt).lower()}"
            )
    known = {f.name for f in functions}
    for name in sorted(blocks.keys() - known):
        found.append(f"[functions.{name}] in {path.name} names no function in functions/")
    return found
