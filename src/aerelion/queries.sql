-- Every statement the Python side runs. Business rules live in the migrations; these
-- mostly call them. Placeholders are psycopg's (%(name)s); {braces} are identifiers.

-- ensure_history --
-- Create the migration history table exactly as the Supabase CLI does
SET LOCAL lock_timeout = '4s';
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;

-- read_history --
-- Applied migrations, oldest first
SELECT version, coalesce(name, '') AS name, statements
FROM supabase_migrations.schema_migrations
ORDER BY version;

-- history_exists --
-- Whether the migration history table exists
SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL AS present;

-- record_migration --
-- Record one applied migration as the Supabase CLI does
INSERT INTO supabase_migrations.schema_migrations (version, name, statements)
VALUES (%(version)s, %(name)s, %(statements)s);

-- ensure_seed_table --
-- Create the seed tracking table exactly as the Supabase CLI does
SET LOCAL lock_timeout = '4s';
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.seed_files (path text NOT NULL PRIMARY KEY, hash text NOT NULL);

-- read_seeds --
-- Seed files already run, with the hash of their content
SELECT path, hash FROM supabase_migrations.seed_files;

-- record_seed --
-- Remember that a seed file ran with this content
INSERT INTO supabase_migrations.seed_files (path, hash) VALUES (%(path)s, %(hash)s)
ON CONFLICT (path) DO UPDATE SET hash = EXCLUDED.hash;

-- is_supabase --
-- Hosted Supabase and its local stack have the platform's own superuser role
SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'supabase_admin') AS supabase;

-- set_shim_grants --
-- Choose the default privileges the platform shim emulates, for this transaction
SELECT set_config('aerelion.default_grants', %(mode)s, true);

-- lock_migrations --
-- One `db push` at a time per database
SELECT pg_advisory_lock(hashtext('aerelion.migrations'));

-- unlock_migrations --
-- Release the `db push` lock
SELECT pg_advisory_unlock(hashtext('aerelion.migrations'));

-- reset_connection --
-- Forget settings an earlier migration changed on this connection, as the CLI does
RESET ALL;

-- drop_database --
-- Remove a local database and everything in it
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- create_database --
-- Create an empty database
CREATE DATABASE {database};

-- server_version --
-- The server's version number, e.g. 150008
SELECT current_setting('server_version_num')::int AS version;

-- act_as --
-- Act as an API role with the caller's JWT claims for this transaction, as PostgREST does
SELECT set_config('search_path', 'public, extensions', true),
       set_config('statement_timeout', coalesce(%(statement_timeout)s, current_setting('statement_timeout')), true),
       set_config('role', %(role)s, true),
       set_config('request.jwt.claims', %(claims)s, true),
       set_config('request.method', %(method)s, true),
       set_config('request.path', %(path)s, true),
       set_config('request.headers', %(headers)s, true);

-- ping --
-- The database answers
SELECT 1 AS ok;

-- is_admin --
-- Whether the caller is an admin (decided in SQL)
SELECT public.is_admin() AS admin;

-- record_edge_function_log --
-- The one log row of a request
SELECT public.record_edge_function_log(
  p_function_name => %(function_name)s,
  p_message => %(message)s,
  p_status_code => %(status_code)s,
  p_duration_ms => %(duration_ms)s,
  p_user_id => %(user_id)s,
  p_ip_address => %(ip_address)s,
  p_details => %(details)s,
  p_level => %(level)s
) AS id;

-- create_local_user --
-- A confirmed email user, as Supabase Auth would create one (the same user if it exists)
INSERT INTO auth.users (id, email, aud, role, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
VALUES (gen_random_uuid(), lower(%(email)s), 'authenticated', 'authenticated', now(),
        '{"provider": "email", "providers": ["email"]}', %(metadata)s)
ON CONFLICT (email) WHERE is_sso_user = false DO UPDATE SET updated_at = now()
RETURNING id;

-- grant_admin --
-- Make a user an admin
INSERT INTO public.user_roles (user_id, role) VALUES (%(user_id)s, 'admin')
ON CONFLICT (user_id, role) DO NOTHING;

-- find_user --
-- A user by email
SELECT id, email FROM auth.users WHERE email = lower(%(email)s);

-- show_mode --
-- The operational mode and who set it
SELECT operational_mode, updated_at, updated_by FROM public.nexus_config WHERE id = 'singleton';

-- set_operational_mode --
-- Switch the operational mode (the caller must be an admin or the service role)
SELECT operational_mode, updated_at, updated_by FROM public.set_operational_mode(%(mode)s);

-- apply_retention --
-- Remove rows past their retention period (service role)
SELECT public.apply_retention() AS report;

-- seal_audit_log --
-- Seal the settled rows of the request log into a new checkpoint (no row: nothing to seal)
SELECT c.id, c.horizon::text AS horizon, c.previous_horizon::text AS previous_horizon,
       c.first_seq, c.last_seq, c.row_count,
       encode(c.previous_digest, 'hex') AS previous_digest, encode(c.digest, 'hex') AS digest,
       c.created_at
FROM public.seal_audit_log() AS c
WHERE c.id IS NOT NULL;

-- verify_audit_log --
-- Recompute every seal and checkpoint; the first fault, if any, and the head digest
SELECT v.ok, v.checkpoints, v.sealed_rows, v.unsealed_rows, v.fault, v.fault_seq,
       v.head_digest
FROM public.verify_audit_log() AS v;

-- purge_audit_log --
-- Remove whole sealed checkpoints whose rows are all older than the cut-off
SELECT public.purge_audit_log(p_before => %(before)s) AS rows_removed;

-- registry_get --
-- A value of the system registry (admins and the service role; secrets: service role only)
SELECT public.registry_get(%(namespace)s, %(key)s) AS value;

-- request_vps_provisioning --
-- A client asks for a VPS; every check is in SQL (returns the job id)
SELECT public.request_vps_provisioning(
  p_plan => %(plan)s, p_region => %(region)s, p_activation_request_id => %(activation_request_id)s,
  p_notes => %(notes)s, p_target_user_id => %(target_user_id)s,
  p_idempotency_key => %(idempotency_key)s
) AS job_id;

-- cancel_provisioning_job --
-- The owner (or an admin) cancels a job nothing was bought for
SELECT id, status FROM public.cancel_provisioning_job(%(job_id)s);

-- retry_provisioning_job --
-- An admin sends a failed or cancelled job round again (audited)
SELECT id, status FROM public.retry_provisioning_job(%(job_id)s);

-- list_provisioning_jobs --
-- Jobs the caller may see, newest first, optionally of one status
SELECT id, user_id, action, status, step, attempt_count, max_attempts, last_error,
       scheduled_at, created_at, updated_at, vps_instance_id, worker_id
FROM public.provisioning_queue
WHERE %(status)s::text IS NULL OR status = %(status)s::text
ORDER BY created_at DESC
LIMIT %(limit)s;

-- show_provisioning_job --
-- One job the caller may see
SELECT id, user_id, action, payload, status, step, attempt_count, max_attempts, last_error,
       scheduled_at, started_at, completed_at, created_at, updated_at, vps_instance_id,
       worker_id, lease_expires_at, claims, result, activation_request_id
FROM public.provisioning_queue WHERE id = %(job_id)s;

-- claim_provisioning_jobs --
-- Claim due jobs of the actions this worker runs (recovering expired leases first)
SELECT * FROM public.claim_provisioning_jobs(%(limit)s, %(worker_id)s, %(lease_seconds)s, %(actions)s::text[]);

-- renew_provisioning_lease --
-- Keep holding a job while working on it
SELECT public.renew_provisioning_lease(%(job_id)s, %(lease)s, %(worker_id)s, %(lease_seconds)s) AS expires;

-- complete_provisioning_job --
-- The holder finished the job
SELECT status FROM public.complete_provisioning_job(%(job_id)s, %(lease)s, %(worker_id)s, %(result)s);

-- fail_provisioning_job --
-- The holder's attempt failed (retried with backoff unless final)
SELECT status, scheduled_at, attempt_count
FROM public.fail_provisioning_job(%(job_id)s, %(lease)s, %(worker_id)s, %(error)s, %(retryable)s);

-- wait_provisioning_job --
-- The holder waits for Hostinger; the job comes back without counting an attempt
SELECT status, scheduled_at
FROM public.wait_provisioning_job(%(job_id)s, %(lease)s, %(worker_id)s, %(step)s, %(delay_seconds)s, %(deadline_seconds)s, %(timeout_error)s);

-- prepare_provisioned_vps --
-- The job's VPS row with its sealed secrets, before anything is bought
SELECT id FROM public.prepare_provisioned_vps(
  %(job_id)s, %(lease)s, %(worker_id)s, %(instance_id)s, %(hostname)s,
  %(ssh_ciphertext)s, %(ssh_iv)s, %(ssh_tag)s, %(ssh_key_version)s, %(ssh_key_label)s,
  %(n8n_ciphertext)s, %(n8n_iv)s, %(n8n_tag)s, %(n8n_key_version)s
);

-- mark_provisioning_purchase --
-- A purchase is about to be sent (true) or surely did not happen (false)
SELECT public.mark_provisioning_purchase(%(job_id)s, %(lease)s, %(worker_id)s, %(started)s);

-- record_provisioned_vm --
-- The VM Hostinger created for the job
SELECT public.record_provisioned_vm(%(job_id)s, %(lease)s, %(worker_id)s, %(virtual_machine_id)s, %(order)s);

-- finish_provisioned_vps --
-- The VM runs: the VPS is active and the job complete
SELECT status FROM public.finish_provisioned_vps(%(job_id)s, %(lease)s, %(worker_id)s, %(ip_address)s, %(n8n_instance_url)s);

-- mark_provisioned_vps_error --
-- The VM failed at Hostinger
SELECT public.mark_provisioned_vps_error(%(job_id)s, %(lease)s, %(worker_id)s);

-- provisioned_vps_secrets --
-- The sealed secrets of a job's VPS row (service role)
SELECT v.id, v.encrypted_ssh_private_key, v.ssh_encryption_iv, v.ssh_encryption_tag, v.ssh_key_version
FROM public.vps_instances v WHERE v.id = %(instance_id)s;

-- worker_settings --
-- The registry settings the queue worker reads
SELECT public.registry_get('queue', 'lease_s') AS lease_s,
       public.registry_get('queue', 'batch_size') AS batch_size,
       public.registry_get('hostinger', 'template_id') AS template_id,
       public.registry_get('hostinger', 'payment_method_id') AS payment_method_id,
       public.registry_get('hostinger', 'setup_timeout_s') AS setup_timeout_s,
       public.registry_get('hostinger', 'poll_interval_s') AS poll_interval_s,
       public.registry_get('hostinger', 'confirm_purchase_s') AS confirm_purchase_s;

-- == security: human signatures, credentials, key rotation, rate limits ==

-- record_human_verification --
-- A passed human-signature challenge and its token's record (service role)
SELECT public.record_human_verification(
  %(user_id)s, %(veracity_score)s, %(behavioral_data)s, %(jti)s, %(purpose)s, %(token_hash)s,
  %(expires_at)s
);

-- has_human_signature --
-- Whether the request's X-THS-Token is a valid human signature of the caller
SELECT public.has_human_signature() AS valid;

-- encrypted_column_sets --
-- The encrypted column sets key rotation walks
SELECT name, table_name, ciphertext_column FROM public.encrypted_columns ORDER BY name;

-- count_encrypted_values --
-- Values of a column set per key version and scheme (a dry run)
SELECT key_version, scheme, n FROM public.count_encrypted_values(%(name)s);

-- encrypted_values_to_rotate --
-- The next batch of values not on the newest key and scheme
SELECT id, ciphertext, iv, tag, key_version
FROM public.encrypted_values_to_rotate(%(name)s, %(version)s, %(after)s, %(limit)s);

-- store_rotated_values --
-- Store a batch of re-sealed values where the rows still hold what was read
SELECT id FROM public.store_rotated_values(%(name)s, %(values)s) AS id;

-- record_key_rotation --
-- The audit row of a rotation run
SELECT public.record_key_rotation(%(summary)s);

-- activation_credential_slot --
-- The row id a credential of the caller's activation will have
SELECT public.activation_credential_slot(%(request_id)s, %(credential_type)s) AS id;

-- store_activation_credential --
-- Store a sealed credential of the caller's activation
SELECT id, credential_type, service_name, status, created_at
FROM public.store_activation_credential(
  %(id)s, %(request_id)s, %(credential_type)s, %(service_name)s, %(ciphertext)s, %(iv)s,
  %(tag)s, %(key_version)s, %(metadata)s
);

-- read_activation_credentials --
-- Sealed credentials for an admin with a human signature (audited)
SELECT * FROM public.read_activation_credentials(%(credential_id)s, %(request_id)s);

-- revoke_activation_credential --
-- The owner or an admin revokes a credential
SELECT id, service_name, revoked_at, revoked_by
FROM public.revoke_activation_credential(%(credential_id)s, %(reason)s);

-- integration_connection_slot --
-- The row id of the caller's live connection to a provider
SELECT public.integration_connection_slot(%(provider)s) AS id;

-- connect_integration --
-- Store the caller's sealed integration credentials
SELECT id, provider, status, updated_at
FROM public.connect_integration(
  %(id)s, %(provider)s, %(ciphertext)s, %(iv)s, %(tag)s, %(key_version)s, %(granted_scopes)s,
  %(connected_email)s
);

-- revoke_integration --
-- Revoke the caller's connections to a provider
SELECT public.revoke_integration(%(provider)s) AS revoked;

-- integration_status --
-- The caller's live connections (never ciphertext)
SELECT provider, status, connected_email, granted_scopes, expires_at, created_at, updated_at
FROM public.integration_connections
WHERE user_id = auth.uid() AND status NOT IN ('archived', 'revoked')
ORDER BY provider;

-- activation_readiness --
-- Which required providers an activation has connected
SELECT public.activation_readiness(%(request_id)s) AS readiness;

-- request_auto_activation --
-- Queue the activation once everything it needs is connected
SELECT public.request_auto_activation(%(request_id)s) AS job_id;

-- hit_rate_limit --
-- Count one call of an endpoint for an identity the runtime established (false: over)
SELECT public.hit_rate_limit(%(identity)s, %(key)s, %(max)s, %(window_seconds)s) AS allowed;

-- == billing ==

-- prepare_tier_checkout --
-- The caller may check out this tier price: the tier, its mode, the stored customer, the app domain
SELECT tier, mode, price_id, customer_id, domain
FROM public.prepare_tier_checkout(%(price_id)s, %(mode)s);

-- prepare_library_checkout --
-- The caller may buy this catalog item: what it is, its catalog price, the stored customer, the domain
SELECT item_type, item_id, slug, name, description, price_cents, customer_id, domain
FROM public.prepare_library_checkout(%(item_type)s, %(item_id)s);

-- record_stripe_customer --
-- Store the Stripe customer of a user (the first stored one wins and is returned)
SELECT public.record_stripe_customer(%(user_id)s, %(customer_id)s) AS customer_id;

-- billing_portal_target --
-- The caller's stored Stripe customer and the app domain
SELECT customer_id, domain FROM public.billing_portal_target();

-- billing_status --
-- What the caller holds, from our billing records
SELECT subscribed, status, tier, mode, product_id, price_id, subscription_end, past_due_since,
       grace_ends_at, checked_at
FROM public.billing_status();

-- verify_checkout_session --
-- Apply a Checkout Session read back from Stripe, if it is the user's (idempotent with the webhook)
SELECT complete, mode, status, item_type, item_id, tier, amount_cents, outcome
FROM public.verify_checkout_session(%(user_id)s, %(session)s);

-- receive_stripe_event --
-- Store a verified Stripe event once for its endpoint and apply it
SELECT outcome, duplicate FROM public.receive_stripe_event(%(endpoint)s, %(event)s::jsonb);

-- apply_billing_grace --
-- Pause the live activations of clients unpaid past the grace period
SELECT public.apply_billing_grace() AS report;

-- == vps operations: list, metrics, reboot, scale requests, credentials ==

-- list_vps_instances --
-- The caller's servers, newest first (never a ciphertext column)
SELECT id, virtual_machine_id, status, ip_address, hostname, plan, region, ssh_key_label,
       n8n_instance_url, credentials_viewed_at, credentials_rotated_at, agents_deployed,
       activation_request_id, notes, cpus, memory_mb, disk_mb, rebooting_since, created_at,
       updated_at
FROM public.vps_instances
WHERE user_id = auth.uid()
ORDER BY created_at DESC;

-- begin_vps_metrics --
-- The caller's instance's cached metrics, or the lease to fetch them
SELECT instance_id, virtual_machine_id, status, cpus, memory_mb, disk_mb, state, vitality,
       sampled_at, refresh_token
FROM public.begin_vps_metrics(%(instance_id)s);

-- store_vps_metrics --
-- Store metrics fetched under a lease (and the VM's size)
SELECT public.store_vps_metrics(
  %(instance_id)s, %(refresh_token)s, %(vitality)s, %(cpus)s, %(memory_mb)s, %(disk_mb)s
) AS stored;

-- release_vps_metrics --
-- Give up a metrics lease after a failed fetch
SELECT public.release_vps_metrics(%(instance_id)s, %(refresh_token)s);

-- begin_vps_reboot --
-- Check and mark a reboot of the caller's instance
SELECT instance_id, virtual_machine_id FROM public.begin_vps_reboot(%(instance_id)s);

-- record_vps_reboot --
-- Keep Hostinger's restart action and queue the watch
SELECT public.record_vps_reboot(%(instance_id)s, %(action_id)s) AS job_id;

-- abort_vps_reboot --
-- Hostinger did not restart: back to active, the attempt not counted
SELECT public.abort_vps_reboot(%(instance_id)s, %(user_id)s, %(error)s);

-- finish_vps_reboot --
-- The restart settled: the instance takes the VM's state and the watch completes
SELECT status FROM public.finish_vps_reboot(
  %(job_id)s, %(lease)s, %(worker_id)s, %(vm_state)s
);

-- request_vps_scale --
-- Record a scale request and raise it to the admins
SELECT id, instance_id, status, message, created_at
FROM public.request_vps_scale(%(instance_id)s, %(message)s);

-- resolve_vps_scale_request --
-- An admin resolves or declines a scale request
SELECT id, instance_id, status, resolution_note, resolved_by, resolved_at
FROM public.resolve_vps_scale_request(%(request_id)s, %(status)s, %(note)s);

-- view_vps_credentials --
-- A view of an instance's credentials (one-time for the owner; audited)
SELECT instance_id, ip_address, hostname, n8n_instance_url, first_view, admin_read, viewed_at,
       ssh_ciphertext, ssh_iv, ssh_tag, ssh_key_version,
       n8n_ciphertext, n8n_iv, n8n_tag, n8n_key_version
FROM public.view_vps_credentials(%(instance_id)s);

-- begin_vps_credential_rotation --
-- The owner may rotate this instance's credentials now
SELECT instance_id, virtual_machine_id, hostname, previous_public_key_id
FROM public.begin_vps_credential_rotation(%(instance_id)s);

-- store_rotated_vps_credentials --
-- Store rotated, sealed credentials and re-open one view
SELECT public.store_rotated_vps_credentials(
  %(instance_id)s, %(user_id)s, %(ciphertext)s, %(iv)s, %(tag)s, %(key_version)s,
  %(public_key_id)s
) AS rotated_at;

-- == command center: heartbeats, the provenance log, status, reports ==

-- record_agent_heartbeat --
-- An agent's heartbeat, with the level and message of its log row
SELECT id, agent_id, status, message, metadata, created_at, log_level, log_message
FROM public.record_agent_heartbeat(%(agent_id)s, %(status)s, %(message)s, %(metadata)s);

-- record_manual_pulse --
-- An admin's manual pulse for an agent
SELECT id, agent_id, status, message, metadata, created_at
FROM public.record_manual_pulse(%(agent_id)s, %(status)s, %(telemetry)s);

-- agent_states --
-- Every agent with its newest heartbeat and its derived state
SELECT agent_id, codename, module, state, last_status, last_message, last_heartbeat_at,
       heartbeat_interval_s
FROM public.agent_states();

-- provenance_log --
-- A page of the log: newest first before a sequence number, or what is new after one
SELECT seq, id, created_at, function_name, level, message, status_code, duration_ms, agent_id
FROM public.provenance_log(
  %(before)s, %(after)s, %(limit)s, %(level)s, %(function)s, %(agent)s, %(since)s
);

-- provenance_summary --
-- The mode, the agents and the counts over the newest 1,000 rows
SELECT public.provenance_summary() AS summary;

-- issue_log_stream_ticket --
-- Store a one-time stream ticket (its SHA-256) for the calling admin
SELECT public.issue_log_stream_ticket(%(token_hash)s) AS expires_at;

-- redeem_log_stream_ticket --
-- Spend a stream ticket: the admin it was issued to
SELECT public.redeem_log_stream_ticket(%(token_hash)s) AS user_id;

-- system_status --
-- Queue, nodes, agents, audit and webhooks at a glance
SELECT public.system_status() AS status;

-- aar_telemetry --
-- What the after-action report is built from
SELECT public.aar_telemetry(%(window_hours)s) AS telemetry;

-- == n8n mesh ==

-- reserve_n8n_instance --
-- Reserve capacity on the least-loaded active node (no instance id: fall back)
SELECT instance_id, instance_url, api_key_secret, runtime_secret, used_fallback
FROM public.reserve_n8n_instance(%(mapping_id)s);

-- release_n8n_instance --
-- Give back a mapping's reservation (once)
SELECT public.release_n8n_instance(%(mapping_id)s) AS released;

-- begin_n8n_activation --
-- Check, claim and reserve an activation; what the copy is built from
SELECT public.begin_n8n_activation(%(request_id)s, %(actor)s) AS begun;

-- record_n8n_resources --
-- What exists on n8n for this attempt so far
SELECT public.record_n8n_resources(
  %(mapping_id)s, %(claim_id)s, %(base_url)s, %(workflow_ids)s, %(credential_ids)s
);

-- finish_n8n_activation --
-- The copy is live
SELECT id, status, webhook_url FROM public.finish_n8n_activation(
  %(mapping_id)s, %(claim_id)s, %(base_url)s, %(workflow_id)s, %(credential_ids)s,
  %(webhook_url)s
);

-- fail_n8n_activation --
-- The attempt failed (capacity back when nothing is left on n8n)
SELECT id, status, error_message FROM public.fail_n8n_activation(
  %(mapping_id)s, %(claim_id)s, %(reason)s, %(cleaned)s
);

-- begin_n8n_lifecycle --
-- May the actor pause, resume, revoke or retrigger now; the mapping and its node
SELECT public.begin_n8n_lifecycle(%(request_id)s, %(actor)s, %(action)s) AS mapping;

-- finish_n8n_lifecycle --
-- Record what n8n did for a lifecycle action
SELECT id, status, webhook_status
FROM public.finish_n8n_lifecycle(%(mapping_id)s, %(actor)s, %(action)s, %(details)s);

-- n8n_mapping_for_job --
-- A mapping as billing left it, for the pause/resume jobs
SELECT public.n8n_mapping_for_job(%(mapping_id)s) AS mapping;

-- read_runtime_credentials --
-- Sealed credentials of a live activation on the calling node (audited)
SELECT public.read_runtime_credentials(%(instance_id)s, %(request_id)s) AS found;

-- n8n_runtime_secrets --
-- Where each node's runtime secret is named
SELECT id, runtime_secret FROM public.n8n_runtime_secrets();

-- n8n_vault_secret --
-- The Vault value a node's secret reference names
SELECT public.n8n_vault_secret(%(reference)s) AS secret;

-- n8n_instances_to_ping --
-- Nodes the health check asks
SELECT id, instance_url, status, ping_interval_s FROM public.n8n_instances_to_ping();

-- record_n8n_ping --
-- One readiness answer (offline after silence, back when it answers)
SELECT id, status, last_ping_at, auto_offline
FROM public.record_n8n_ping(%(instance_id)s, %(ok)s, %(error)s);

-- add_n8n_instance --
-- Add a node to the pool
SELECT id, instance_url, label, region, status, max_capacity, api_key_secret, runtime_secret
FROM public.add_n8n_instance(
  %(url)s, %(label)s, %(region)s, %(max_capacity)s, %(api_key_secret)s, %(runtime_secret)s
);

-- list_n8n_instances --
-- The pool with loads and live activations
SELECT * FROM public.list_n8n_instances();

-- set_n8n_instance_status --
-- Drain a node (maintenance) or set its status
SELECT id, instance_url, status FROM public.set_n8n_instance_status(%(ref)s, %(status)s);

-- remove_n8n_instance --
-- Remove a node that runs nothing
SELECT id, instance_url FROM public.remove_n8n_instance(%(ref)s);

-- n8n_instance_by_ref --
-- One node by id, URL or label (for a health check on demand)
SELECT i.id, i.instance_url, i.status FROM public.list_n8n_instances() i
WHERE i.id::text = %(ref)s OR i.instance_url = rtrim(%(ref)s, '/') OR i.label = %(ref)s;

-- import_n8n_template --
-- Import one workflow as an immutable template (hash of canonical JSON, providers)
SELECT id, slug, name, file_hash, detected_providers, trigger_type, outcome, reason
FROM public.import_n8n_template(
  %(workflow)s, %(filename)s, %(name)s, %(slug)s, %(description)s, NULL
);

-- import_automation_workflow --
-- Import a workflow and create or update its catalog entry
SELECT slug, status, message, automation_agent_id, template_id, template_outcome
FROM public.import_automation_workflow(%(workflow)s, %(filename)s, %(slug)s);

-- agent_deploy_plan --
-- The node the agents' heartbeat workflows go to, and each agent with its workflow there
SELECT public.agent_deploy_plan(%(node)s) AS plan;

-- record_agent_workflow --
-- An agent's workflow deployed and verified active (with its log row)
SELECT agent_id, workflow_id
FROM public.record_agent_workflow(
  %(agent_id)s, %(instance_id)s, %(workflow_id)s, %(workflow_name)s, %(definition)s,
  %(credential_id)s, %(key_fingerprint)s, %(outcome)s, %(actor)s
);

-- agent_heal_target --
-- An agent's derived state and its workflows with their nodes
SELECT public.agent_heal_target(%(agent_id)s) AS target;

-- record_agent_heal --
-- One heal as it ended: the workflow's state, a log row, a notification
SELECT public.record_agent_heal(
  %(agent_id)s, %(instance_id)s, %(previous_state)s, %(action)s, %(ok)s, %(workflow_id)s,
  %(error)s, %(trigger)s, %(actor)s
) AS recorded;

-- claim_agent_heals --
-- The agents the worker heals now (claimed against other workers)
SELECT agent_id, state FROM public.claim_agent_heals();

-- agent_heal_interval_s --
-- How often the worker looks for agents to heal
SELECT public.agent_heal_interval_s() AS interval_s;

-- n8n_mapping_heal_target --
-- The active mapping of an activation, for an operator's restart of its workflows
SELECT public.n8n_mapping_heal_target(%(request_id)s) AS mapping;

-- record_mapping_heal --
-- A client's workflows restarted or not: log row and notification
SELECT public.record_mapping_heal(%(mapping_id)s, %(ok)s, %(error)s, %(actor)s) AS recorded;

-- forget_agent_workflow --
-- An agent's workflow removed from a node it left; whether that node still runs agents
SELECT public.forget_agent_workflow(%(agent_id)s, %(instance_id)s, %(actor)s) AS still_used;
