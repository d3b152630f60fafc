-- Infrastructure: n8n nodes, the provisioning queue, VPS instances; the seven operations
-- agents (registry, heartbeats, their own workflows) and the operators' notifications.

CREATE TABLE public.n8n_instances (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  instance_url text NOT NULL CHECK (instance_url ~ '^https?://[^/\s]+'),
  region text NOT NULL DEFAULT 'us-east-1',
  label text,
  current_load integer NOT NULL DEFAULT 0,
  max_capacity integer NOT NULL DEFAULT 100 CHECK (max_capacity > 0),
  status text NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'degraded', 'offline', 'maintenance')),
  -- where the node's API key lives (env:NAME or vault:NAME), never the key itself
  api_key_secret text CHECK (api_key_secret ~ '^(env|vault):[A-Za-z_][A-Za-z0-9_]*$'),
  last_ping_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- the backstop of least-load reservation: never above capacity, never negative
  CONSTRAINT n8n_instances_load_within_capacity
    CHECK (current_load >= 0 AND current_load <= max_capacity)
);
CREATE UNIQUE INDEX idx_n8n_instances_url ON public.n8n_instances (instance_url);
CREATE INDEX n8n_instances_routing_idx ON public.n8n_instances (status, current_load, max_capacity);

CREATE TABLE public.provisioning_queue (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,  -- pending work goes
  activation_request_id uuid REFERENCES public.installation_requests (id) ON DELETE SET NULL,
  action text NOT NULL CHECK (action IN ('provision_vps', 'deploy_agents', 'activate_workflows')),
  payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
  status text NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'retrying', 'cancelled')),
  attempt_count integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
  max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 25),
  last_error text,
  scheduled_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  completed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (attempt_count <= max_attempts)
);
CREATE INDEX provisioning_queue_due_idx
  ON public.provisioning_queue (status, scheduled_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX provisioning_queue_user_idx ON public.provisioning_queue (user_id);

CREATE TABLE public.vps_instances (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- a live server costs money: it is terminated before its owner can be deleted
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE RESTRICT,
  virtual_machine_id text UNIQUE,
  status text NOT NULL DEFAULT 'provisioning' CHECK (status IN (
    'provisioning', 'active', 'rebooting', 'stopped', 'error', 'terminated'
  )),
  ip_address text,
  hostname text,
  plan text,
  region text,
  encrypted_ssh_private_key text,
  encrypted_ssh_public_key text,
  ssh_key_label text,
  ssh_encryption_iv text,
  ssh_encryption_tag text,
  encrypted_n8n_credentials text,
  n8n_encryption_iv text,
  n8n_encryption_tag text,
  n8n_instance_url text,
  credentials_viewed_at timestamptz,
  agents_deployed boolean NOT NULL DEFAULT false,
  agents_deployed_at timestamptz,
  agent_deploy_error text,
  triggered_by text,
  activation_request_id uuid REFERENCES public.installation_requests (id) ON DELETE SET NULL,
  notes text,
  n8n_key_version integer NOT NULL DEFAULT 1 CHECK (n8n_key_version >= 1),
  ssh_key_version integer NOT NULL DEFAULT 1 CHECK (ssh_key_version >= 1),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vps_instances_user_idx ON public.vps_instances (user_id);

CREATE TABLE public.agent_registry (
  id text PRIMARY KEY CHECK (id ~ '^AG-[0-9]{2}$'),
  codename text NOT NULL,
  module text NOT NULL,
  fn_description text NOT NULL DEFAULT '',
  ref_id text NOT NULL DEFAULT '',
  system_impact text NOT NULL DEFAULT '',
  has_site_scan boolean NOT NULL DEFAULT false,
  sort_order integer NOT NULL DEFAULT 0,
  -- an agent silent for twice this long is OFFLINE (derived, never stored)
  heartbeat_interval_s integer NOT NULL DEFAULT 7200 CHECK (heartbeat_interval_s > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_registry_sort_idx ON public.agent_registry (sort_order);
INSERT INTO public.agent_registry
  (id, codename, module, fn_description, ref_id, system_impact, has_site_scan, sort_order)
VALUES
  ('AG-01', 'THE SENTINEL', 'SENTINEL', 'CUI Handoff & NIST/CMMC Scanning', 'REF-SENTINEL-800171', 'NIST_800-171_COMPLIANCE', true, 1),
  ('AG-02', 'THE LIBRARIAN', 'LIBRARIAN', 'Universal Data Ontology & Schema Mapping', 'REF-LIBRARIAN-ONTO', 'DATA_NORMALIZATION', false, 2),
  ('AG-03', 'THE WATCHMAN', 'WATCHMAN', 'COOP & Drift Detection Resilience', 'REF-WATCHMAN-COOP', 'CONTINUITY_ASSURANCE', false, 3),
  ('AG-04', 'THE GATEKEEPER', 'GATEKEEPER', 'PoLP Access Governance & Security', 'REF-GATEKEEPER-POLP', 'ACCESS_CONTROL', false, 4),
  ('AG-05', 'THE AUDITOR', 'AUDITOR', 'Threat Surface Reduction (Anti-Shadow IT)', 'REF-AUDITOR-TSR', 'THREAT_MITIGATION', false, 5),
  ('AG-06', 'THE CHRONICLER', 'CHRONICLER', 'Real-Time System Status Ticker', 'REF-CHRONICLER-SYS', 'OBSERVABILITY', false, 6),
  ('AG-07', 'THE ENVOY', 'ENVOY', 'Executive Briefing AI (After-Action Reports)', 'REF-ENVOY-AAR', 'EXECUTIVE_OVERSIGHT', false, 7);

CREATE TABLE public.agent_heartbeats (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id text NOT NULL REFERENCES public.agent_registry (id) ON DELETE CASCADE,
  status text NOT NULL DEFAULT 'NOMINAL'
    CHECK (status IN ('NOMINAL', 'PROCESSING', 'DRIFT', 'ERROR')),
  message text NOT NULL DEFAULT '' CHECK (char_length(message) <= 1000),
  metadata jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(metadata) = 'object' AND pg_column_size(metadata) <= 16384),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_heartbeats_agent_created_idx
  ON public.agent_heartbeats (agent_id, created_at DESC);
CREATE INDEX agent_heartbeats_created_idx ON public.agent_heartbeats (created_at DESC);

-- The agents' own workflows: which n8n node runs which agent's workflow.
CREATE TABLE public.agent_workflows (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id text NOT NULL REFERENCES public.agent_registry (id) ON DELETE CASCADE,
  n8n_instance_id uuid NOT NULL REFERENCES public.n8n_instances (id) ON DELETE CASCADE,
  workflow_id text NOT NULL,
  workflow_name text,
  active boolean NOT NULL DEFAULT false,
  last_verified_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (agent_id, n8n_instance_id)
);

CREATE TABLE public.admin_notifications (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at timestamptz NOT NULL DEFAULT now(),
  type text NOT NULL CHECK (type IN (
    'scale_request', 'provisioning_failed', 'auto_heal', 'auto_heal_failure',
    'credential_submitted', 'integration_connected', 'oauth_connected', 'agent_offline',
    'audit_fault', 'twilio_sms_received', 'twilio_missed_call', 'twilio_voicemail',
    'twilio_call_completed', 'generic'
  )),
  title text NOT NULL CHECK (char_length(title) <= 200),
  body text NOT NULL CHECK (char_length(body) <= 4000),
  severity text NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'error', 'critical')),
  metadata jsonb NOT NULL DEFAULT '{}',
  read boolean NOT NULL DEFAULT false
);
CREATE INDEX admin_notifications_created_idx ON public.admin_notifications (created_at DESC);

CREATE TRIGGER n8n_instances_set_updated_at BEFORE UPDATE ON public.n8n_instances
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER provisioning_queue_set_updated_at BEFORE UPDATE ON public.provisioning_queue
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER vps_instances_set_updated_at BEFORE UPDATE ON public.vps_instances
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER agent_workflows_set_updated_at BEFORE UPDATE ON public.agent_workflows
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER n8n_instances_audit AFTER INSERT OR UPDATE OR DELETE ON public.n8n_instances
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('instance_url');
CREATE TRIGGER agent_registry_audit AFTER INSERT OR UPDATE OR DELETE ON public.agent_registry
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('id');
CREATE TRIGGER agent_workflows_audit AFTER INSERT OR UPDATE OR DELETE ON public.agent_workflows
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('agent_id', 'n8n_instance_id', 'workflow_id');

ALTER TABLE public.n8n_instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.n8n_instances FORCE ROW LEVEL SECURITY;
ALTER TABLE public.provisioning_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.provisioning_queue FORCE ROW LEVEL SECURITY;
ALTER TABLE public.vps_instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vps_instances FORCE ROW LEVEL SECURITY;
ALTER TABLE public.agent_registry ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.agent_registry FORCE ROW LEVEL SECURITY;
ALTER TABLE public.agent_heartbeats ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.agent_heartbeats FORCE ROW LEVEL SECURITY;
ALTER TABLE public.agent_workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.agent_workflows FORCE ROW LEVEL SECURITY;
ALTER TABLE public.admin_notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.admin_notifications FORCE ROW LEVEL SECURITY;

-- n8n nodes: admins manage their configuration (audited); the load counter belongs to
-- reserve/release.
CREATE POLICY n8n_instances_select_admin ON public.n8n_instances
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY n8n_instances_admin_insert ON public.n8n_instances
  FOR INSERT TO authenticated WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY n8n_instances_admin_update ON public.n8n_instances
  FOR UPDATE TO authenticated
  USING ((SELECT public.is_admin())) WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY n8n_instances_admin_delete ON public.n8n_instances
  FOR DELETE TO authenticated USING ((SELECT public.is_admin()));

-- Jobs and servers: owners read theirs (the client polls its job), admins all.
CREATE POLICY provisioning_queue_select_own ON public.provisioning_queue
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
CREATE POLICY vps_instances_select_own ON public.vps_instances
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));

-- The agent registry is public; admins tune it (audited).
CREATE POLICY agent_registry_select_all ON public.agent_registry
  FOR SELECT TO anon, authenticated USING (true);
CREATE POLICY agent_registry_admin_update ON public.agent_registry
  FOR UPDATE TO authenticated
  USING ((SELECT public.is_admin())) WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY agent_heartbeats_select_admin ON public.agent_heartbeats
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY agent_workflows_select_admin ON public.agent_workflows
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY admin_notifications_select_admin ON public.admin_notifications
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY admin_notifications_mark_read ON public.admin_notifications
  FOR UPDATE TO authenticated
  USING ((SELECT public.is_admin())) WITH CHECK ((SELECT public.is_admin()));

REVOKE ALL ON TABLE public.n8n_instances, public.provisioning_queue, public.vps_instances,
  public.agent_registry, public.agent_heartbeats, public.agent_workflows,
  public.admin_notifications
  FROM PUBLIC, anon, authenticated, service_role;

GRANT SELECT, DELETE ON TABLE public.n8n_instances TO authenticated;
GRANT INSERT (instance_url, region, label, max_capacity, status, api_key_secret)
  ON TABLE public.n8n_instances TO authenticated;
GRANT UPDATE (region, label, max_capacity, status, api_key_secret)
  ON TABLE public.n8n_instances TO authenticated;
GRANT SELECT ON TABLE public.provisioning_queue TO authenticated;
-- Never the ciphertext columns.
GRANT SELECT (
  id, user_id, virtual_machine_id, status, ip_address, hostname, plan, region, ssh_key_label,
  n8n_instance_url, credentials_viewed_at, agents_deployed, agents_deployed_at,
  agent_deploy_error, triggered_by, activation_request_id, notes, n8n_key_version,
  ssh_key_version, created_at, updated_at
) ON TABLE public.vps_instances TO authenticated;
GRANT SELECT ON TABLE public.agent_registry TO anon, authenticated;
GRANT UPDATE (fn_description, system_impact, has_site_scan, sort_order, heartbeat_interval_s)
  ON TABLE public.agent_registry TO authenticated;
GRANT SELECT ON TABLE public.agent_heartbeats, public.agent_workflows TO authenticated;
GRANT SELECT ON TABLE public.admin_notifications TO authenticated;
GRANT UPDATE (read) ON TABLE public.admin_notifications TO authenticated;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.n8n_instances, public.provisioning_queue,
  public.vps_instances, public.agent_workflows, public.admin_notifications
  TO service_role;
GRANT SELECT, INSERT ON TABLE public.agent_heartbeats TO service_role;  -- heartbeats are facts
GRANT SELECT, UPDATE ON TABLE public.agent_registry TO service_role;
