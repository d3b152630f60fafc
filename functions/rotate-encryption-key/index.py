"""Re-seal every encrypted column with the newest key (admin + human signature; the
database checks both for every batch). `aerelion keys rotate` does the same from a shell."""

from pydantic import Field

from aerelion import key_rotation
from aerelion.credentials import require_vault
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Rotate(RequestModel):
    dry_run: bool = True
    batch_size: int = Field(default=500, ge=1, le=5000)


async def handle(call: Call[Rotate]) -> dict:
    report = await key_rotation.rotate(
        call.as_caller,
        require_vault(call.settings),
        dry_run=call.body.dry_run,
        batch_size=call.body.batch_size,
    )
    summary = report.summary()
    call.note.message = (
        f"KEY_ROTATION dry_run={report.dry_run} rotated={summary['rotated']}"
        f" unknown_version={summary['unknown_version']} unreadable={summary['unreadable']}"
    )
    return report.as_dict()


function = Function(
    name="rotate-encryption-key",
    handler=handle,
    auth="ths",
    body=Rotate,
    summary="Re-seal every encrypted column with the newest key (admin + human signature)",
    rate_limit=(6, 3600),
)
