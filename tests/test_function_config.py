"""`supabase/config.toml` says `verify_jwt` exactly as each function's auth policy implies."""

from __future__ import annotations

from pathlib import Path

import pytest

from aerelion import supabase_config
from aerelion.functions import Function, load_functions
from support import REPO, TEST_FUNCTIONS


async def nothing(call):  # pragma: no cover - never called
    return None


@pytest.mark.parametrize(
    ("policy", "verify_jwt"),
    [
        ("user", True),
        ("admin", True),
        ("service", True),
        ("secret:CRON_SECRET", False),
        ("secret:HEARTBEAT_SECRET@x-heartbeat-key", False),
        ("signature", False),
        ("none", False),
        ("secret:CRON_SECRET | service", False),
        ("user | admin", True),
    ],
)
def test_verify_jwt_follows_the_policy(policy, verify_jwt):
    assert Function("f", nothing, policy).verify_jwt is verify_jwt


def test_unknown_policies_fail_at_declaration():
    with pytest.raises(ValueError, match="unknown auth policy"):
        Function("f", nothing, "users")
    with pytest.raises(ValueError, match="lower-case"):
        Function("Bad_Name", nothing, "user")
    with pytest.raises(ValueError, match="methods"):
        Function("f", nothing, "user", methods=("TRACE",))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('project_id = "t"\n' + text)
    return path


def test_a_non_jwt_policy_with_verify_jwt_true_is_reported(tmp_path):
    functions = load_functions(TEST_FUNCTIONS, ["webhook", "whoami"])
    config = write_config(
        tmp_path,
        "[functions.webhook]\nverify_jwt = true\n[functions.whoami]\nverify_jwt = true\n",
    )
    assert supabase_config.problems(functions, config) == [
        "[functions.webhook] verify_jwt = true, but its policy `signature` needs false"
    ]


def test_missing_and_stale_blocks_are_reported(tmp_path):
    functions = load_functions(TEST_FUNCTIONS, ["whoami"])
    config = write_config(tmp_path, "[functions.gone]\nverify_jwt = false\n")
    found = supabase_config.problems(functions, config)
    assert found[0].startswith("config.toml has no block for whoami")
    assert "verify_jwt = true" in found[0]
    assert found[1] == "[functions.gone] in config.toml names no function in functions/"


def test_a_jwt_policy_defaults_to_the_clis_true(tmp_path):
    functions = load_functions(TEST_FUNCTIONS, ["whoami"])
    assert supabase_config.problems(functions, write_config(tmp_path, "[functions.whoami]\n")) == []


def test_the_repository_config_matches_the_functions():
    functions = load_functions(REPO / "functions")
    assert supabase_config.problems(functions, REPO / "supabase" / "config.toml") == []
