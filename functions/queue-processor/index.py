"""Run due provisioning jobs once (a cron trigger; `aerelion worker` runs the same loop
continuously). Answers what became of each job claimed. First it applies the billing grace
period (`apply_billing_grace()`): clients unpaid past it have their live activations
paused."""

from aerelion import job_runner
from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    async with call.as_service() as db:
        grace = await db.value("apply_billing_grace")
    worker = await job_runner.build_worker(call.settings, call.database, listen=False)
    outcomes = await worker.run_once(await job_runner.batch_size(call.database))
    call.note.message = f"QUEUE_RUN processed={len(outcomes)}"
    if not outcomes:
        return {"processed": 0, "message": "QUEUE_EMPTY", "billing_grace": grace}
    return {
        "processed": len(outcomes),
        "results": [o.summary() for o in outcomes],
        "billing_grace": grace,
    }


function = Function(
    name="queue-processor",
    handler=handle,
    auth="secret:CRON_SECRET | service",
    summary="Claim and run due provisioning jobs once",
)
