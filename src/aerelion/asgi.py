"""The app for any ASGI server: `uvicorn aerelion.asgi:app`.

Serves every function, or only those named in `AERELION_FUNCTIONS` (comma-separated), so
one function can be deployed on its own. Needs `DATABASE_URL`.
"""

from aerelion.app import create_app
from aerelion.config import Settings

_settings = Settings.load()
app = create_app(
    [n.strip() for n in (_settings.get("AERELION_FUNCTIONS") or "").split(",") if n.strip()]
    or None,
    settings=_settings,
)
