"""`python -m bench` (`make bench`): run every benchmark."""

from bench import (
    audit_inserts,
    billing,
    command_center,
    function_rps,
    n8n_mesh,
    queue,
    vault_rotation,
)

print("== function requests/s vs pgbench (same SQL)")
function_rps.main()
print()
print("== audit log inserts/s, tamper-evident vs plain table")
audit_inserts.main()
print()
print("== provisioning queue: enqueue, drain, claim")
queue.main()
print()
print("== Stripe webhooks: verified events applied/s vs pgbench (same SQL)")
billing.main()
print()
print("== credentials: seal+open per core vs bare AES-GCM; key rotation vs a set-based UPDATE")
vault_rotation.main()
print()
print("== command center: the live log page at 1,000 vs 1,000,000 rows; heartbeats/s")
command_center.main()
print()
print("== n8n mesh: reservations/s vs pgbench; duplicate-and-activate on real n8n vs bare calls")
n8n_mesh.main()
