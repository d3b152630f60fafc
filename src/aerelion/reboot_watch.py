"""The `watch_reboot` job: follow a restart Hostinger accepted until the VM has settled.

The restart's action must finish first (right after the call the VM may still report
`running` from before it stopped); then the VM's state decides the instance's status
(`finish_vps_reboot`). A VM that does not settle within the job's `timeout_s` fails the
job, and the database then marks the instance `error` rather than `rebooting` forever.
"""

from __future__ import annotations

from aerelion.hostinger import HostingerError
from aerelion.hostinger_access import ClientFactory
from aerelion.queue import Claim, JobQueue

FINISHED_ACTION_STATES = frozenset({"success", "error"})


class RebootWatcher:
    def __init__(self, hostinger: ClientFactory | None) -> None:
        self.hostinger = hostinger

    async def __call__(self, claim: Claim, queue: JobQueue) -> str:
        if self.hostinger is None:
            return await queue.fail(claim, "HOSTINGER_API_TOKEN is not configured")
        payload = claim.payload
        vm_id = int(payload["virtual_machine_id"])
        poll_s = int(payload.get("poll_s") or 5)
        timeout_s = int(payload.get("timeout_s") or 900)
        timeout_error = f"the VM did not come back from its restart within {timeout_s} s"
        try:
            async with self.hostinger() as hostinger:
                if payload.get("action_id") is not None:
                    action = await hostinger.get_action(vm_id, int(payload["action_id"]))
                    if action.get("state") not in FINISHED_ACTION_STATES:
                        return await queue.wait(
                            claim, "wait_restart", poll_s, timeout_s, timeout_error
                        )
                vm = await hostinger.get_virtual_machine(vm_id)
        except HostingerError as error:
            return await queue.fail(claim, f"Hostinger: {error.message}", retryable=error.retryable)
        row = await queue.report(claim, "finish_vps_reboot", vm_state=vm.state)
        if row is None or row["status"] is None:  # still stopping or starting
            return await queue.wait(claim, "wait_running", poll_s, timeout_s, timeout_error)
        return row["status"]
