"""What several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

from aerelion.config import Settings

REPO = Path(__file__).resolve().parents[1]


def settings_for(project_dir: Path = REPO, **environ: str) -> Settings:
    """Settings that ignore the developer's `.env`: only what a test says."""
    base = {
        # The strict default: nothing is granted unless a migration grants it. The PG 15
        # pass in CI runs the suite with `legacy` to prove the REVOKEs as well.
        "AERELION_SHIM_DEFAULT_GRANTS": os.environ.get("AERELION_SHIM_DEFAULT_GRANTS", "none"),
    }
    base.update(environ)
    return Settings(project_dir, base)


def write_migration(project: Path, file_name: str, text: str) -> Path:
    path = project / "supabase" / "migrations" / file_name
    path.write_text(text)
    return path
