"""The access matrix: who may read and write each table, and who may call each function.

Every table in `public` and every actor (anon, the sample row's owner, another signed-in
user, an admin, the service role) meet once per operation: the attempt runs as PostgREST
runs a request (role and JWT claims set inside the transaction), and the transaction is
rolled back. An operation succeeds when a select returns the sample row, or an insert,
update or delete affects exactly one row without error; an error or zero rows is a refusal.

EXPECTED and FUNCTION_EXECUTE below are the intended access. A table without an entry
fails, and so does a function an API role may execute without being listed: each new one
needs a deliberate decision here.
"""

from __future__ import annotations

import difflib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from aerelion import deploy
from support import settings_for

pytestmark = pytest.mark.security

ACTORS = ("anon", "owner", "other", "admin", "service")

# -- who may do what ---------------------------------------------------------------------
#
# Operations: "select" (the sample row), "select <name> row" (another sample row),
# "select <column>" (a column only some may read), "insert", "update <column>", "delete".

EXPECTED: dict[str, dict[str, set[str]]] = {
    "edge_function_logs": {
        "select": {"owner", "admin", "service"},
        "insert": set(),  # rows are written only through record_edge_function_log/audit_event
        "update message": set(),
        "delete": set(),
    },
    "user_roles": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update role": set(),
        "delete": {"service"},
    },
    "profiles": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update display_name": {"owner", "service"},
        "delete": {"service"},
    },
    "system_registry": {
        "select": {"admin", "service"},
        "select secret row": {"service"},
        "insert": set(),  # writes go through registry_set
        "update value": set(),
        "delete": set(),
    },
    "nexus_config": {
        "select": {"admin", "service"},
        "insert": set(),  # changed only through set_operational_mode
        "update operational_mode": set(),
        "delete": set(),
    },
    "automation_agents": {
        "select": {"anon", "owner", "other", "admin", "service"},  # a published row
        "select draft row": {"admin", "service"},
        "insert": {"admin", "service"},
        "update price_cents": {"admin", "service"},
        "delete": {"admin", "service"},
    },
    "automation_bundles": {
        "select": {"anon", "owner", "other", "admin", "service"},  # a published row
        "select draft row": {"admin", "service"},
        "insert": {"admin", "service"},
        "update bundle_price_cents": {"admin", "service"},
        "delete": {"admin", "service"},
    },
    "tier_entitlements": {
        "select": {"owner", "other", "admin", "service"},
        "insert": set(),
        "update max_vps": {"admin"},
        "delete": set(),
    },
    "purchases": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update status": {"service"},
        "delete": set(),
    },
    "client_billing": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update status": {"service"},
        "update renewal_reminders_enabled": {"owner", "service"},
        "delete": set(),
    },
    "client_notifications": {
        "select": {"owner", "service"},
        "insert": {"service"},
        "update read": {"owner", "service"},
        "update title": {"service"},
        "delete": {"service"},
    },
    "installation_requests": {
        "select": {"owner", "admin", "service"},
        "select activation_notes_internal": {"service"},
        "insert": {"service"},
        "update status": {"service"},
        "update activation_eta": {"admin", "service"},
        "delete": {"service"},
    },
    "n8n_workflow_templates": {
        "select": {"admin", "service"},
        "insert": {"service"},
        "update workflow_json": set(),  # immutable, even for the service role
        "delete": set(),
    },
    "n8n_mappings": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update status": {"service"},
        "delete": {"service"},
    },
    "integration_connections": {
        "select": {"owner", "admin", "service"},
        "select encrypted_payload": {"service"},
        "insert": {"service"},
        "update status": {"service"},
        "delete": {"service"},
    },
    "activation_credentials": {
        "select": {"owner", "admin", "service"},
        "select encrypted_data": {"service"},
        "insert": {"service"},
        "update status": {"service"},
        "delete": {"service"},
    },
    "sovereign_bridge": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update is_human_verified": {"service"},
        "delete": {"service"},
    },
    "n8n_instances": {
        "select": {"admin", "service"},
        "insert": {"admin", "service"},
        "update status": {"admin", "service"},
        "update current_load": {"service"},  # belongs to reserve/release
        "delete": {"admin", "service"},
    },
    "provisioning_queue": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update status": {"service"},
        "delete": {"service"},
    },
    "vps_instances": {
        "select": {"owner", "admin", "service"},
        "select encrypted_ssh_private_key": {"service"},
        "select encrypted_n8n_credentials": {"service"},
        "insert": {"service"},
        "update status": {"service"},
        "delete": {"service"},
    },
    "agent_registry": {
        "select": {"anon", "owner", "other", "admin", "service"},
        "insert": set(),
        "update heartbeat_interval_s": {"admin", "service"},
        "delete": set(),
    },
    "agent_heartbeats": {
        "select": {"admin", "service"},
        "insert": {"service"},
        "update status": set(),  # heartbeats are facts
        "delete": set(),
    },
    "agent_workflows": {
        "select": {"admin", "service"},
        "insert": {"service"},
        "update active": {"service"},
        "delete": {"service"},
    },
    "admin_notifications": {
        "select": {"admin", "service"},
        "insert": {"service"},
        "update read": {"admin", "service"},
        "update title": {"service"},
        "delete": {"service"},
    },
    "rate_limits": {
        "select": {"admin", "service"},
        "insert": set(),  # counted only by check_rate_limit
        "update hits": set(),
        "delete": set(),
    },
    # The audit log's own tables: read by operators, written only by its SQL functions.
    "audit_checkpoints": {
        "select": {"admin", "service"},
        "insert": set(),  # only seal_audit_log
        "update digest": set(),
        "delete": set(),  # only purge_audit_log
    },
    "audit_log_seals": {
        "select": {"admin", "service"},
        "insert": set(),
        "update row_hash": set(),
        "delete": set(),
    },
    "audit_purges": {
        "select": {"admin", "service"},
        "insert": set(),
        "update through_digest": set(),
        "delete": set(),
    },
    # Billing records: operators read them; only the billing functions write them.
    "stripe_events": {
        "select": {"admin", "service"},
        "insert": set(),  # only receive_stripe_event
        "update outcome": set(),
        "delete": set(),
    },
    "billing_subscriptions": {
        "select": {"admin", "service"},
        "insert": set(),
        "update status": set(),
        "delete": set(),
    },
    "billing_invoices": {
        "select": {"admin", "service"},
        "insert": set(),
        "update paid_at": set(),
        "delete": set(),
    },
    "billing_reversals": {
        "select": {"admin", "service"},
        "insert": set(),
        "update occurred_at": set(),
        "delete": set(),
    },
    # Human signatures: the server records them (record_human_verification), nobody edits
    # them, and the token's hash stays with the service.
    "human_signatures": {
        "select": {"owner", "admin", "service"},
        "select token_hash": {"service"},
        "insert": set(),
        "update expires_at": set(),
        "delete": set(),
    },
    # The catalog of encrypted columns key rotation walks: fixed by migrations.
    "encrypted_columns": {
        "select": {"admin", "service"},
        "insert": set(),
        "update table_name": set(),
        "delete": set(),
    },
    # VPS operations: the metrics cache and scale requests are written only by their
    # functions (and the service role).
    "vps_metrics_cache": {
        "select": {"admin", "service"},
        "insert": {"service"},
        "update vitality": {"service"},
        "delete": {"service"},
    },
    "vps_scale_requests": {
        "select": {"owner", "admin", "service"},
        "insert": {"service"},
        "update message": {"service"},
        "delete": {"service"},
    },
    # Stream tickets of the live log: only their SQL functions touch them.
    "log_stream_tickets": {
        "select": {"service"},
        "insert": {"service"},
        "update used_at": {"service"},
        "delete": {"service"},
    },
}

# Listed before their migration exists: skipped while absent. Any other table in EXPECTED
# must exist.
NOT_YET_MIGRATED = {"audit_checkpoints", "audit_log_seals", "audit_purges"}

# Functions in `public` and the API roles that may EXECUTE them; every other function
# (trigger functions, internal helpers such as user_is_admin, assert_may_inspect,
# retention_period) is executable by none of them.
FUNCTION_EXECUTE: dict[str, set[str]] = {
    "is_admin()": {"authenticated", "service_role"},
    "has_role(uuid,app_role)": {"authenticated", "service_role"},
    "record_edge_function_log(text,text,integer,integer,uuid,text,jsonb,text)": {"service_role"},
    "audit_event(text,text,jsonb,text)": {"service_role"},
    "registry_get(text,text)": {"authenticated", "service_role"},
    "registry_set(text,text,text,text,boolean)": {"authenticated", "service_role"},
    "set_operational_mode(text)": {"authenticated", "service_role"},
    "current_tier(uuid)": {"service_role"},
    "entitlement_limits(uuid)": {"authenticated", "service_role"},
    "has_entitlement(uuid,text,uuid)": {"authenticated", "service_role"},
    "check_rate_limit(text,integer,integer)": {"authenticated", "service_role"},
    "enforce_rate_limit(text,integer,integer)": {"authenticated", "service_role"},
    "apply_retention()": {"service_role"},
    "audit_row_hash(edge_function_logs)": {"service_role"},
    "seal_audit_log()": {"service_role"},
    "verify_audit_log()": {"service_role"},
    "purge_audit_log(timestamp with time zone)": {"service_role"},
    # the provisioning queue: clients request and cancel, admins retry, workers do the rest
    "request_vps_provisioning(text,text,uuid,text,uuid,text)": {"authenticated", "service_role"},
    "cancel_provisioning_job(uuid)": {"authenticated", "service_role"},
    "retry_provisioning_job(uuid)": {"authenticated", "service_role"},
    "enqueue_provisioning(uuid,text,jsonb,uuid,text,integer)": {"service_role"},
    "recover_expired_provisioning_leases()": {"service_role"},
    "claim_provisioning_jobs(integer,text,integer)": {"service_role"},
    "claim_provisioning_jobs(integer,text,integer,text[])": {"service_role"},
    "renew_provisioning_lease(uuid,integer,text,integer)": {"service_role"},
    "complete_provisioning_job(uuid,integer,text,jsonb)": {"service_role"},
    "fail_provisioning_job(uuid,integer,text,text,boolean)": {"service_role"},
    "wait_provisioning_job(uuid,integer,text,text,integer,integer,text)": {"service_role"},
    "prepare_provisioned_vps(uuid,integer,text,uuid,text,text,text,text,integer,text,text,text,"
    "text,integer)": {"service_role"},
    "mark_provisioning_purchase(uuid,integer,text,boolean)": {"service_role"},
    "record_provisioned_vm(uuid,integer,text,text,jsonb)": {"service_role"},
    "finish_provisioned_vps(uuid,integer,text,text,text)": {"service_role"},
    "mark_provisioned_vps_error(uuid,integer,text)": {"service_role"},
    "trigger_queue_processor()": {"service_role"},
    "schedule_queue_processor()": {"service_role"},
    # billing: clients check out and read their own status; Stripe's events, the success
    # page's read-back and the grace period are the service's
    "prepare_tier_checkout(text,text)": {"authenticated"},
    "prepare_library_checkout(text,uuid)": {"authenticated"},
    "billing_portal_target()": {"authenticated"},
    "billing_status()": {"authenticated"},
    "record_stripe_customer(uuid,text)": {"service_role"},
    "verify_checkout_session(uuid,jsonb)": {"service_role"},
    "receive_stripe_event(text,jsonb)": {"service_role"},
    "apply_one_time_checkout(jsonb,timestamp with time zone,text)": {"service_role"},
    "apply_subscription_checkout(jsonb,timestamp with time zone)": {"service_role"},
    "apply_stripe_subscription(jsonb,timestamp with time zone,text,boolean)": {"service_role"},
    "apply_stripe_invoice(jsonb,timestamp with time zone,boolean)": {"service_role"},
    "apply_stripe_reversal(jsonb,timestamp with time zone,text)": {"service_role"},
    "apply_billing_grace()": {"service_role"},
    # human signatures: the server records a pass; callers (and SQL) check their own
    "record_human_verification(uuid,numeric,jsonb,text,text,bytea,timestamp with time zone)": {
        "service_role"
    },
    "has_human_signature(text)": {"authenticated", "service_role"},
    # key rotation: the service role, or an admin with a signature (checked inside)
    "count_encrypted_values(text)": {"authenticated", "service_role"},
    "encrypted_values_to_rotate(text,integer,uuid,integer)": {"authenticated", "service_role"},
    "store_rotated_values(text,jsonb)": {"authenticated", "service_role"},
    "record_key_rotation(jsonb)": {"authenticated", "service_role"},
    # activation credentials and Connect-Once: owners, admins with a signature, the service
    "activation_credential_slot(uuid,text)": {"authenticated", "service_role"},
    "store_activation_credential(uuid,uuid,text,text,text,text,text,integer,jsonb)": {
        "authenticated",
        "service_role",
    },
    "read_activation_credentials(uuid,uuid)": {"authenticated", "service_role"},
    "revoke_activation_credential(uuid,text)": {"authenticated", "service_role"},
    "integration_connection_slot(text)": {"authenticated"},
    "connect_integration(uuid,text,text,text,text,integer,text[],text)": {"authenticated"},
    "revoke_integration(text)": {"authenticated"},
    "activation_readiness(uuid)": {"authenticated", "service_role"},
    "request_auto_activation(uuid)": {"authenticated", "service_role"},
    # per-endpoint rate limits: the runtime names the identity
    "hit_rate_limit(text,text,integer,integer)": {"service_role"},
    "refund_rate_limit(text,text,integer)": {"service_role"},
    # VPS operations: owners and admins act (checked inside); what Hostinger answered is
    # stored by the service
    "begin_vps_metrics(uuid)": {"authenticated", "service_role"},
    "store_vps_metrics(uuid,uuid,jsonb,integer,integer,integer)": {"service_role"},
    "release_vps_metrics(uuid,uuid)": {"service_role"},
    "begin_vps_reboot(uuid)": {"authenticated"},
    "record_vps_reboot(uuid,bigint)": {"service_role"},
    "abort_vps_reboot(uuid,uuid,text)": {"service_role"},
    "finish_vps_reboot(uuid,integer,text,text)": {"service_role"},
    "request_vps_scale(uuid,text)": {"authenticated"},
    "resolve_vps_scale_request(uuid,text,text)": {"authenticated"},
    "view_vps_credentials(uuid)": {"authenticated"},
    "begin_vps_credential_rotation(uuid)": {"authenticated"},
    "store_rotated_vps_credentials(uuid,uuid,text,text,text,integer,bigint)": {"service_role"},
    # the command center: operators read (checked inside), agents' workflows report in
    "record_agent_heartbeat(text,text,text,jsonb)": {"service_role"},
    "record_manual_pulse(text,text,jsonb)": {"authenticated"},
    "agent_states()": {"authenticated", "service_role"},
    "provenance_log(bigint,bigint,integer,text,text,text,timestamp with time zone)": {
        "authenticated",
        "service_role",
    },
    "provenance_summary()": {"authenticated", "service_role"},
    "issue_log_stream_ticket(bytea)": {"authenticated"},
    "redeem_log_stream_ticket(bytea)": {"service_role"},
    "system_status()": {"authenticated", "service_role"},
    "aar_telemetry(integer)": {"authenticated", "service_role"},
    # the n8n mesh: capacity, nodes, the activation lifecycle and run-time credentials are
    # the service's (handlers pass the verified caller); admins import templates (checked
    # inside)
    "reserve_n8n_instance(uuid)": {"service_role"},
    "release_n8n_instance(uuid)": {"service_role"},
    "add_n8n_instance(text,text,text,integer,text,text)": {"service_role"},
    "list_n8n_instances()": {"service_role"},
    "set_n8n_instance_status(text,text)": {"service_role"},
    "remove_n8n_instance(text)": {"service_role"},
    "n8n_instances_to_ping()": {"service_role"},
    "record_n8n_ping(uuid,boolean,text)": {"service_role"},
    "n8n_vault_secret(text)": {"service_role"},
    "n8n_runtime_secrets()": {"service_role"},
    "begin_n8n_activation(uuid,uuid)": {"service_role"},
    "record_n8n_resources(uuid,uuid,text,text[],text[])": {"service_role"},
    "finish_n8n_activation(uuid,uuid,text,text,text[],text)": {"service_role"},
    "fail_n8n_activation(uuid,uuid,text,boolean)": {"service_role"},
    "begin_n8n_lifecycle(uuid,uuid,text)": {"service_role"},
    "finish_n8n_lifecycle(uuid,uuid,text,jsonb)": {"service_role"},
    "n8n_mapping_for_job(uuid)": {"service_role"},
    # the agents' workflows: deploy and heal (the functions check the admin)
    "agent_deploy_plan(text)": {"service_role"},
    "record_agent_workflow(text,uuid,text,text,jsonb,text,text,text,uuid)": {"service_role"},
    "agent_heal_target(text)": {"service_role"},
    "record_agent_heal(text,uuid,text,text,boolean,text,text,text,uuid)": {"service_role"},
    "claim_agent_heals()": {"service_role"},
    "agent_heal_interval_s()": {"service_role"},
    "forget_agent_workflow(text,uuid,uuid)": {"service_role"},
    "n8n_mapping_heal_target(uuid)": {"service_role"},
    "record_mapping_heal(uuid,boolean,text,uuid)": {"service_role"},
    "read_runtime_credentials(uuid,uuid)": {"service_role"},
    "import_n8n_template(jsonb,text,text,text,text,uuid)": {"authenticated", "service_role"},
    "import_automation_workflow(jsonb,text,text)": {"authenticated", "service_role"},
}

# -- the rows the attempts use -----------------------------------------------------------
#
# SQL runs with these parameters: %(owner)s, %(other)s, %(admin)s (the actors' user ids),
# %(newcomer)s (a signed-up user whose profile was removed and who owns nothing),
# %(request)s (an installation request of the owner), %(instance)s (an n8n instance) and,
# in `insert`, %(actor)s: the acting user, or the owner for anon and the service role.


@dataclass(frozen=True)
class Rows:
    key: str  # the column that identifies a row
    sample: str  # run as the superuser; returns the sample row's key
    insert: str  # the row an actor tries to add
    update: dict[str, str]  # column -> the SQL value an actor tries to write into the sample
    extra: dict[str, str] = field(default_factory=dict)  # "<name> row" -> SQL returning a key
    secret_columns: tuple[str, ...] = ()  # columns of the sample only some may read
    setup: str | None = None  # run as the superuser before the sample
    before_insert: str | None = None  # run as the superuser before the insert attempt


ROWS: dict[str, Rows] = {
    "edge_function_logs": Rows(
        key="id",
        sample="insert into public.edge_function_logs (function_name, message, user_id)"
        " values ('sample', 'a request', %(owner)s) returning id",
        insert="insert into public.edge_function_logs (function_name, message, user_id)"
        " values ('forged', 'a forged request', %(actor)s)",
        update={"message": "'rewritten'"},
    ),
    "user_roles": Rows(
        key="id",
        sample="insert into public.user_roles (user_id, role) values (%(owner)s, 'user')"
        " returning id",
        insert="insert into public.user_roles (user_id, role) values (%(actor)s, 'admin')",
        update={"role": "'admin'"},
    ),
    "profiles": Rows(
        key="id",
        sample="select id from public.profiles where id = %(owner)s",
        insert="insert into public.profiles (id, display_name) values (%(newcomer)s, 'New')",
        update={"display_name": "'Renamed'"},
    ),
    "system_registry": Rows(
        key="id",
        sample="insert into public.system_registry (namespace, key, value)"
        " values ('matrix', 'plain', 'visible') returning id",
        extra={
            "secret row": "insert into public.system_registry (namespace, key, value, is_secret)"
            " values ('matrix', 'secret', 'hidden', true) returning id",
        },
        insert="insert into public.system_registry (namespace, key, value)"
        " values ('matrix', 'inserted', 'x')",
        update={"value": "'changed'"},
    ),
    "nexus_config": Rows(
        key="id",
        sample="select id from public.nexus_config",
        before_insert="delete from public.nexus_config",
        insert="insert into public.nexus_config (id, operational_mode)"
        " values ('singleton', 'WAR_ROOM')",
        update={"operational_mode": "'WAR_ROOM'"},
    ),
    "automation_agents": Rows(
        key="id",
        sample="insert into public.automation_agents (slug, name, status, price_cents)"
        " values ('sample-published', 'Published', 'published', 1000) returning id",
        extra={
            "draft row": "insert into public.automation_agents (slug, name)"
            " values ('sample-draft', 'Draft') returning id",
        },
        insert="insert into public.automation_agents (slug, name) values ('inserted', 'New')",
        update={"price_cents": "0"},
    ),
    "automation_bundles": Rows(
        key="id",
        sample="insert into public.automation_bundles (slug, name, status, bundle_price_cents)"
        " values ('sample-published', 'Published', 'published', 1000) returning id",
        extra={
            "draft row": "insert into public.automation_bundles (slug, name)"
            " values ('sample-draft', 'Draft') returning id",
        },
        insert="insert into public.automation_bundles (slug, name) values ('inserted', 'New')",
        update={"bundle_price_cents": "0"},
    ),
    "tier_entitlements": Rows(
        key="tier",
        sample="insert into public.tier_entitlements"
        " (tier, name, codename, mode, rank, max_vps, includes_all_published, expires)"
        " values ('sample', 'Sample', 'TIER-98', 'payment', 98, 1, false, false) returning tier",
        insert="insert into public.tier_entitlements"
        " (tier, name, codename, mode, rank, max_vps, includes_all_published, expires)"
        " values ('inserted', 'New', 'TIER-99', 'payment', 99, 1, true, false)",
        update={"max_vps": "50"},
    ),
    "purchases": Rows(
        key="id",
        sample="insert into public.purchases (email, item_type, item_id, amount_cents, user_id)"
        " values ('owner@example.com', 'agent', gen_random_uuid(), 1000, %(owner)s)"
        " returning id",
        insert="insert into public.purchases"
        " (email, item_type, item_id, amount_cents, status, user_id)"
        " values ('actor@example.com', 'agent', gen_random_uuid(), 0, 'completed', %(actor)s)",
        update={"status": "'refunded'"},
    ),
    "client_billing": Rows(
        key="user_id",
        sample="insert into public.client_billing (user_id, status) values (%(owner)s, 'active')"
        " returning user_id",
        insert="insert into public.client_billing (user_id, status)"
        " values (%(newcomer)s, 'active')",
        update={"status": "'canceled'", "renewal_reminders_enabled": "false"},
    ),
    "client_notifications": Rows(
        key="id",
        sample="insert into public.client_notifications (user_id, type, title, body)"
        " values (%(owner)s, 'generic', 'Hello', 'A message') returning id",
        insert="insert into public.client_notifications (user_id, type, title, body)"
        " values (%(actor)s, 'generic', 'Forged', 'A forged message')",
        update={"read": "true", "title": "'Rewritten'"},
    ),
    "installation_requests": Rows(
        key="id",
        sample="insert into public.installation_requests"
        " (name, email, user_id, activation_notes_internal)"
        " values ('Sample', 'owner@example.com', %(owner)s, 'operators only') returning id",
        secret_columns=("activation_notes_internal",),
        insert="insert into public.installation_requests (name, email, user_id)"
        " values ('Inserted', 'actor@example.com', %(actor)s)",
        update={"status": "'live'", "activation_eta": "'tomorrow'"},
    ),
    "n8n_workflow_templates": Rows(
        key="id",
        sample="insert into public.n8n_workflow_templates (slug, name, workflow_json)"
        " values ('sample', 'Sample', '{}') returning id",
        insert="insert into public.n8n_workflow_templates (slug, name, workflow_json)"
        " values ('inserted', 'New', '{}')",
        update={"workflow_json": """'{"nodes": []}'"""},
    ),
    "n8n_mappings": Rows(
        key="id",
        # its own request: the shared one stays free for the insert attempt
        sample="with r as (insert into public.installation_requests (name, email, user_id)"
        " values ('Mapped', 'owner@example.com', %(owner)s) returning id)"
        " insert into public.n8n_mappings (user_id, activation_request_id)"
        " select %(owner)s, id from r returning id",
        insert="insert into public.n8n_mappings (user_id, activation_request_id)"
        " values (%(actor)s, %(request)s)",
        update={"status": "'active'"},
    ),
    "integration_connections": Rows(
        key="id",
        sample="insert into public.integration_connections"
        " (user_id, provider, status, encrypted_payload, encryption_iv, encryption_tag)"
        " values (%(owner)s, 'slack', 'connected', 'ciphertext', 'iv', 'tag') returning id",
        secret_columns=("encrypted_payload",),
        insert="insert into public.integration_connections (user_id, provider)"
        " values (%(actor)s, 'github')",
        update={"status": "'revoked'"},
    ),
    "activation_credentials": Rows(
        key="id",
        sample="insert into public.activation_credentials (request_id, credential_type,"
        " service_name, encrypted_data, encryption_iv, encryption_tag, created_by)"
        " values (%(request)s, 'api_key', 'Slack', 'ciphertext', 'iv', 'tag', 'owner')"
        " returning id",
        secret_columns=("encrypted_data",),
        insert="insert into public.activation_credentials (request_id, credential_type,"
        " service_name, encrypted_data, encryption_iv, encryption_tag, created_by)"
        " values (%(request)s, 'oauth', 'Google', 'ciphertext', 'iv', 'tag', 'actor')",
        update={"status": "'revoked'"},
    ),
    "sovereign_bridge": Rows(
        key="id",
        sample="insert into public.sovereign_bridge (user_id) values (%(owner)s) returning id",
        insert="insert into public.sovereign_bridge (user_id, is_human_verified)"
        " values (%(newcomer)s, true)",
        update={"is_human_verified": "true"},
    ),
    "n8n_instances": Rows(
        key="id",
        sample="insert into public.n8n_instances (instance_url)"
        " values ('https://sample.example.com') returning id",
        insert="insert into public.n8n_instances (instance_url, status)"
        " values ('https://inserted.example.com', 'active')",
        update={"status": "'offline'", "current_load": "5"},
    ),
    "provisioning_queue": Rows(
        key="id",
        sample="insert into public.provisioning_queue (user_id, action)"
        " values (%(owner)s, 'provision_vps') returning id",
        insert="insert into public.provisioning_queue (user_id, action)"
        " values (%(actor)s, 'deploy_agents')",
        update={"status": "'completed'"},
    ),
    "vps_instances": Rows(
        key="id",
        sample="insert into public.vps_instances"
        " (user_id, encrypted_ssh_private_key, encrypted_n8n_credentials)"
        " values (%(owner)s, 'ciphertext', 'ciphertext') returning id",
        secret_columns=("encrypted_ssh_private_key", "encrypted_n8n_credentials"),
        insert="insert into public.vps_instances (user_id, status) values (%(actor)s, 'active')",
        update={"status": "'terminated'"},
    ),
    "agent_registry": Rows(
        key="id",
        sample="select id from public.agent_registry where id = 'AG-01'",
        insert="insert into public.agent_registry (id, codename, module)"
        " values ('AG-99', 'THE IMPOSTOR', 'IMPOSTOR')",
        update={"heartbeat_interval_s": "60"},
    ),
    "agent_heartbeats": Rows(
        key="id",
        sample="insert into public.agent_heartbeats (agent_id) values ('AG-01') returning id",
        insert="insert into public.agent_heartbeats (agent_id, status) values ('AG-02', 'ERROR')",
        update={"status": "'ERROR'"},
    ),
    "agent_workflows": Rows(
        key="id",
        sample="insert into public.agent_workflows (agent_id, n8n_instance_id, workflow_id)"
        " values ('AG-01', %(instance)s, 'wf-sample') returning id",
        insert="insert into public.agent_workflows (agent_id, n8n_instance_id, workflow_id)"
        " values ('AG-02', %(instance)s, 'wf-inserted')",
        update={"active": "true"},
    ),
    "admin_notifications": Rows(
        key="id",
        sample="insert into public.admin_notifications (type, title, body)"
        " values ('generic', 'Hello', 'A message') returning id",
        insert="insert into public.admin_notifications (type, title, body)"
        " values ('generic', 'Forged', 'A forged message')",
        update={"read": "true", "title": "'Rewritten'"},
    ),
    "rate_limits": Rows(
        key="id",
        sample="insert into public.rate_limits (identifier, action_type, window_start)"
        " values ('service', 'sample', now()) returning id",
        insert="insert into public.rate_limits (identifier, action_type, window_start)"
        " values ('service', 'inserted', now())",
        update={"hits": "1000"},
    ),
    # Checkpoint 100 is the sample; checkpoint 10 exists only for the sample purge, so that
    # a purge through checkpoint 100 is a valid row to attempt.
    "audit_checkpoints": Rows(
        key="id",
        sample="insert into public.audit_checkpoints (id, horizon, previous_horizon,"
        " first_seq, last_seq, row_count, previous_digest, digest) overriding system value"
        " values (100, '200', '100', 1, 1, 1, sha256('a'::bytea), sha256('b'::bytea))"
        " returning id",
        insert="insert into public.audit_checkpoints (horizon, previous_horizon, first_seq,"
        " last_seq, row_count, previous_digest, digest)"
        " values ('300', '200', 2, 2, 1, sha256('b'::bytea), sha256('c'::bytea))",
        update={"digest": "sha256('forged'::bytea)"},
    ),
    "audit_log_seals": Rows(
        key="seq",
        sample="insert into public.audit_log_seals (seq, checkpoint_id, row_hash)"
        " values (1, 100, sha256('row'::bytea)) returning seq",
        insert="insert into public.audit_log_seals (seq, checkpoint_id, row_hash)"
        " values (2, 100, sha256('forged'::bytea))",
        update={"row_hash": "sha256('forged'::bytea)"},
    ),
    "audit_purges": Rows(
        key="id",
        setup="insert into public.audit_checkpoints (id, horizon, previous_horizon,"
        " first_seq, last_seq, row_count, previous_digest, digest) overriding system value"
        " values (10, '100', '1', 1, 1, 1, sha256('z'::bytea), sha256('a'::bytea))",
        sample="insert into public.audit_purges (through_checkpoint_id, through_horizon,"
        " through_digest, checkpoints_removed, rows_removed, purged_before)"
        " values (10, '100', sha256('a'::bytea), 1, 1, now()) returning id",
        insert="insert into public.audit_purges (through_checkpoint_id, through_horizon,"
        " through_digest, checkpoints_removed, rows_removed, purged_before)"
        " values (100, '200', sha256('b'::bytea), 1, 1, now())",
        update={"through_digest": "sha256('forged'::bytea)"},
    ),
    "stripe_events": Rows(
        key="id",
        sample="insert into public.stripe_events (endpoint, id, type, created, payload)"
        " values ('portal', 'evt_matrix', 'invoice.paid', now(), '{}') returning id",
        insert="insert into public.stripe_events (endpoint, id, type, created, payload)"
        " values ('library', 'evt_forged', 'checkout.session.completed', now(), '{}')",
        update={"outcome": "'rewritten'"},
    ),
    "billing_subscriptions": Rows(
        key="id",
        sample="insert into public.billing_subscriptions (id, user_id, customer_id, status)"
        " values ('sub_matrix', %(owner)s, 'cus_matrix', 'active') returning id",
        insert="insert into public.billing_subscriptions (id, user_id, customer_id, status)"
        " values ('sub_forged', %(actor)s, 'cus_forged', 'active')",
        update={"status": "'canceled'"},
    ),
    "billing_invoices": Rows(
        key="id",
        sample="insert into public.billing_invoices (id, customer_id, subscription_id, paid_at)"
        " values ('in_matrix', 'cus_matrix', 'sub_matrix', now()) returning id",
        insert="insert into public.billing_invoices (id, customer_id, subscription_id, paid_at)"
        " values ('in_forged', 'cus_forged', 'sub_forged', now())",
        update={"paid_at": "null"},
    ),
    "billing_reversals": Rows(
        key="charge_id",
        sample="insert into public.billing_reversals (charge_id, kind, customer_id, occurred_at)"
        " values ('ch_matrix', 'refund', 'cus_matrix', now()) returning charge_id",
        insert="insert into public.billing_reversals (charge_id, kind, customer_id, occurred_at)"
        " values ('ch_forged', 'dispute', 'cus_forged', now())",
        update={"occurred_at": "now()"},
    ),
    "human_signatures": Rows(
        key="id",
        sample="insert into public.human_signatures (user_id, jti, purpose, token_hash,"
        " veracity_score, expires_at) values (%(owner)s, 'jti-sample-0000000000', 'ths',"
        " sha256('sample'::bytea), 90, now() + interval '1 hour') returning id",
        secret_columns=("token_hash",),
        insert="insert into public.human_signatures (user_id, jti, purpose, token_hash,"
        " veracity_score, expires_at) values (%(actor)s, 'jti-forged-0000000000', 'ths',"
        " sha256('forged'::bytea), 99, now() + interval '1 day')",
        update={"expires_at": "now() + interval '10 years'"},
    ),
    "encrypted_columns": Rows(
        key="name",
        sample="select name from public.encrypted_columns where name = 'vps_ssh'",
        insert="insert into public.encrypted_columns values ('forged', 'profiles', 'id',"
        " 'display_name', 'display_name', 'display_name', 'display_name')",
        update={"table_name": "'profiles'"},
    ),
    "vps_metrics_cache": Rows(
        key="instance_id",
        setup="insert into public.vps_instances (id, user_id)"
        " values ('00000000-0000-4000-8000-00000000cafe', %(owner)s),"
        " ('00000000-0000-4000-8000-00000000beef', %(owner)s)",
        sample="insert into public.vps_metrics_cache (instance_id, vitality)"
        " values ('00000000-0000-4000-8000-00000000cafe', '{}') returning instance_id",
        insert="insert into public.vps_metrics_cache (instance_id)"
        " values ('00000000-0000-4000-8000-00000000beef')",
        update={"vitality": "'{\"cpu_percent\": 99}'"},
    ),
    "vps_scale_requests": Rows(
        key="id",
        setup="insert into public.vps_instances (id, user_id)"
        " values ('00000000-0000-4000-8000-0000000005ca', %(owner)s)",
        sample="insert into public.vps_scale_requests (instance_id, user_id, message)"
        " values ('00000000-0000-4000-8000-0000000005ca', %(owner)s, 'more') returning id",
        insert="insert into public.vps_scale_requests (instance_id, user_id, message)"
        " values ('00000000-0000-4000-8000-0000000005ca', %(actor)s, 'forged')",
        update={"message": "'rewritten'"},
    ),
    "log_stream_tickets": Rows(
        key="token_hash",
        sample="insert into public.log_stream_tickets (token_hash, user_id, expires_at)"
        " values (sha256('sample'::bytea), %(admin)s, now() + interval '1 minute')"
        " returning token_hash",
        insert="insert into public.log_stream_tickets (token_hash, user_id, expires_at)"
        " values (sha256('forged'::bytea), %(actor)s, now() + interval '1 day')",
        update={"used_at": "now()"},
    ),
}

# Rows several samples point to, created once as the superuser.
SHARED = {
    "request": "insert into public.installation_requests (name, email, user_id)"
    " values ('Shared', 'owner@example.com', %(owner)s) returning id",
    "instance": "insert into public.n8n_instances (instance_url)"
    " values ('https://shared.example.com') returning id",
}


# -- the harness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    url: str
    ids: dict[str, Any]  # user ids and SHARED rows
    samples: dict[str, dict[str, Any]]  # table -> "" (the sample) or "<name> row" -> key
    tables: list[str]  # every table of `public`


@pytest.fixture(scope="module")
def world(create_database) -> World:
    url = create_database()
    deploy.push(url, settings_for(), out=lambda _: None)
    with psycopg.connect(url, autocommit=True) as conn:
        ids: dict[str, Any] = {}
        for name in ("owner", "other", "admin", "newcomer"):
            ids[name] = uuid.uuid4()
            conn.execute(
                "insert into auth.users (id, email) values (%s, %s)",
                [ids[name], f"{name}-{ids[name].hex[:8]}@example.com"],
            )
        conn.execute(
            "insert into public.user_roles (user_id, role) values (%s, 'admin')", [ids["admin"]]
        )
        conn.execute("delete from public.profiles where id = %s", [ids["newcomer"]])
        for name, statement in SHARED.items():
            ids[name] = conn.execute(statement, ids).fetchone()[0]
        tables = [
            name
            for (name,) in conn.execute(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1"
            )
        ]
        samples: dict[str, dict[str, Any]] = {}
        for table, rows in ROWS.items():
            if table not in tables:
                continue
            if rows.setup:
                conn.execute(rows.setup, ids)
            samples[table] = {
                name: conn.execute(statement, ids).fetchone()[0]
                for name, statement in {"": rows.sample, **rows.extra}.items()
            }
    return World(url, ids, samples, tables)


def act_as(conn: psycopg.Connection, actor: str, ids: dict[str, Any]) -> None:
    """What PostgREST runs at the start of a request transaction."""
    if actor == "anon":
        role, claims = "anon", {"role": "anon"}
    elif actor == "service":
        role, claims = "service_role", {"role": "service_role"}
    else:
        role, claims = "authenticated", {"sub": str(ids[actor]), "role": "authenticated"}
    conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        [role, json.dumps(claims)],
    )


@dataclass(frozen=True)
class Attempt:
    operation: str
    sql: str
    row: Any = None  # the key of the row it targets
    before: str | None = None


def attempts(table: str, rows: Rows, samples: dict[str, Any]) -> Iterator[Attempt]:
    where = f"where {rows.key} = %(row)s"
    yield Attempt("select", f"select {rows.key} from public.{table} {where}", samples[""])
    for name in rows.extra:
        yield Attempt(
            f"select {name}", f"select {rows.key} from public.{table} {where}", samples[name]
        )
    for column in rows.secret_columns:
        yield Attempt(
            f"select {column}", f"select {column} from public.{table} {where}", samples[""]
        )
    yield Attempt("insert", rows.insert, before=rows.before_insert)
    for column, value in rows.update.items():
        yield Attempt(
            f"update {column}", f"update public.{table} set {column} = {value} {where}", samples[""]
        )
    yield Attempt("delete", f"delete from public.{table} {where}", samples[""])


def run(conn: psycopg.Connection, attempt: Attempt, actor: str, ids: dict[str, Any]) -> str:
    """'ok', or why the attempt was refused; the transaction is always rolled back."""
    params = {**ids, "actor": ids.get(actor, ids["owner"]), "row": attempt.row}
    try:
        with conn.transaction(force_rollback=True):
            if attempt.before:
                conn.execute(attempt.before, params)
            act_as(conn, actor, ids)
            cursor = conn.execute(attempt.sql, params)
            count = len(cursor.fetchall()) if cursor.description else cursor.rowcount
    except psycopg.Error as error:
        return f"{error.sqlstate}: {error.diag.message_primary}"
    return "ok" if count == 1 else f"{count} rows"


def render(matrix: dict[tuple[str, str], set[str] | None], missing: str) -> list[str]:
    """One line per table and operation: the actors allowed, dots for those refused."""
    return [
        f"{table:<24} {operation:<34} "
        + (
            missing
            if allowed is None
            else " ".join(a if a in allowed else "." * len(a) for a in ACTORS)
        )
        for (table, operation), allowed in matrix.items()
    ]


def check(title: str, expected: list[str], actual: list[str], notes: list[str]) -> None:
    """Fail with the whole matrix as one diff, and a note on every cell that differs."""
    if expected == actual and not notes:
        return
    diff = difflib.unified_diff(
        expected, actual, "expected", "actual", n=len(expected), lineterm=""
    )
    pytest.fail("\n".join([f"{title} differs:", *diff, "", *notes]), pytrace=False)


def test_every_table_has_an_expectation(world):
    assert sorted(set(world.tables) - set(EXPECTED)) == []
    absent = set(EXPECTED) - set(world.tables) - NOT_YET_MIGRATED
    assert sorted(absent) == [], "EXPECTED lists tables the database does not have"


def test_tables_grant_exactly_the_expected_access(world):
    expected: dict[tuple[str, str], set[str] | None] = {}
    actual: dict[tuple[str, str], set[str] | None] = {}
    notes = []
    with psycopg.connect(world.url, autocommit=True, prepare_threshold=None) as conn:
        for table in world.tables:
            for operation, allowed in EXPECTED.get(table, {}).items():
                expected[(table, operation)] = allowed
                actual[(table, operation)] = None  # until attempted
            if table not in ROWS:
                notes.append(f"{table}: no entry in ROWS, nothing attempted")
                continue
            for attempt in attempts(table, ROWS[table], world.samples[table]):
                cell = (table, attempt.operation)
                allowed = expected.setdefault(cell, None)
                actual[cell] = set()
                for actor in ACTORS:
                    outcome = run(conn, attempt, actor, world.ids)
                    if outcome == "ok":
                        actual[cell].add(actor)
                    if allowed is not None and (outcome == "ok") != (actor in allowed):
                        want = "allowed" if actor in allowed else "refused"
                        got = "allowed" if outcome == "ok" else f"refused ({outcome})"
                        notes.append(
                            f"{table} / {attempt.operation} / {actor}: expected {want}, got {got}"
                        )
    check(
        "access matrix",
        render(expected, "(no expectation)"),
        render(actual, "(not attempted)"),
        notes,
    )


def test_functions_are_executable_by_exactly_the_expected_roles(world):
    roles = ("anon", "authenticated", "service_role")
    with psycopg.connect(world.url) as conn:
        rows = conn.execute(
            "select p.oid::regprocedure::text,"
            " array(select r from unnest(%s::text[]) r"
            "       where has_function_privilege(r, p.oid, 'execute'))"
            " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'public' order by 1",
            [list(roles)],
        ).fetchall()
    actual = {signature: set(granted) for signature, granted in rows if granted}
    signatures = sorted(set(actual) | set(FUNCTION_EXECUTE))

    def line(signature: str, granted: set[str] | None) -> str:
        if granted is None:
            return f"{signature:<75} (no such function)"
        return f"{signature:<75} " + " ".join(r if r in granted else "." * len(r) for r in roles)

    existing = {signature for signature, _ in rows}
    check(
        "function EXECUTE matrix",
        [line(s, FUNCTION_EXECUTE.get(s, set())) for s in signatures],
        [line(s, actual.get(s, set()) if s in existing else None) for s in signatures],
        [],
    )
