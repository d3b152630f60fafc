-- The activation pipeline's records: activation requests (their id is the webhook path
-- `aerelion/{activation_request_id}`), immutable workflow templates, per-activation n8n
-- mappings, Connect-Once integration credentials, per-activation credentials, and the
-- human-verification state.
--
-- Clients read their own rows but never the ciphertext columns; statuses, verification
-- flags and ciphertext are written only by SQL functions and the service role.

CREATE TABLE public.installation_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (char_length(name) <= 200),
  email text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  company text,
  purchased_item text,
  preferred_systems text,
  notes text CHECK (char_length(notes) <= 4000),
  created_at timestamptz NOT NULL DEFAULT now(),
  status text NOT NULL DEFAULT 'received' CHECK (status IN (
    'received', 'awaiting_credentials', 'awaiting_activation', 'in_build', 'testing', 'live',
    'active', 'needs_attention', 'paused', 'cancelled', 'completed'
  )),
  customer_visible_status text NOT NULL DEFAULT 'received' CHECK (customer_visible_status IN (
    'received', 'in_review', 'awaiting_credentials', 'awaiting_activation', 'in_build',
    'testing', 'live', 'active', 'needs_attention', 'paused', 'cancelled', 'completed'
  )),
  status_updated_at timestamptz NOT NULL DEFAULT now(),
  internal_owner text,
  activation_eta text,
  activation_notes_internal text,
  activation_notes_customer text,
  last_notified_status text,
  purchase_id text,
  automation_id uuid REFERENCES public.automation_agents (id) ON DELETE RESTRICT,
  bundle_id uuid REFERENCES public.automation_bundles (id) ON DELETE RESTRICT,
  setup_window text,
  awaiting_credentials_since timestamptz,
  last_reminder_sent_at timestamptz,
  reminder_count integer NOT NULL DEFAULT 0 CHECK (reminder_count >= 0),
  reminders_disabled boolean NOT NULL DEFAULT false,
  credentials_submitted_at timestamptz,
  credentials_verified_at timestamptz,
  credentials_count integer NOT NULL DEFAULT 0 CHECK (credentials_count >= 0),
  -- the activation record outlives its user (kept, anonymised)
  user_id uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  CHECK (num_nonnulls(automation_id, bundle_id) <= 1)
);
CREATE INDEX installation_requests_status_idx ON public.installation_requests (status);
CREATE INDEX installation_requests_email_idx ON public.installation_requests (email);
CREATE INDEX installation_requests_user_idx ON public.installation_requests (user_id);
CREATE INDEX installation_requests_reminders_idx
  ON public.installation_requests (customer_visible_status, last_reminder_sent_at, reminder_count)
  WHERE NOT reminders_disabled;
CREATE UNIQUE INDEX installation_requests_purchase_key
  ON public.installation_requests (purchase_id) WHERE purchase_id IS NOT NULL;
CREATE UNIQUE INDEX installation_requests_open_automation_key
  ON public.installation_requests (user_id, automation_id)
  WHERE status NOT IN ('completed', 'cancelled');
CREATE UNIQUE INDEX installation_requests_open_bundle_key
  ON public.installation_requests (user_id, bundle_id)
  WHERE status NOT IN ('completed', 'cancelled');

-- Workflow templates are immutable once imported: a new version is a new row.
CREATE TABLE public.n8n_workflow_templates (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE,
  name text NOT NULL,
  description text,
  workflow_json jsonb NOT NULL CHECK (jsonb_typeof(workflow_json) = 'object'),
  detected_providers text[] NOT NULL DEFAULT '{}',
  node_count integer NOT NULL DEFAULT 0 CHECK (node_count >= 0),
  trigger_type text,
  file_hash text CONSTRAINT n8n_workflow_templates_file_hash_unique UNIQUE
    CHECK (file_hash ~ '^[0-9a-f]{64}$'),
  original_filename text,
  automation_agent_id uuid REFERENCES public.automation_agents (id) ON DELETE RESTRICT,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  imported_by uuid  -- no foreign key: an import record outlives its importer
);
CREATE INDEX n8n_workflow_templates_agent_idx ON public.n8n_workflow_templates (automation_agent_id);

CREATE FUNCTION public.prevent_template_modification()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  RAISE EXCEPTION 'n8n_workflow_templates is immutable: UPDATE/DELETE operations are not allowed; import a new template instead'
    USING ERRCODE = '42501';
END
$$;
REVOKE ALL ON FUNCTION public.prevent_template_modification()
  FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER enforce_template_immutability
  BEFORE UPDATE OR DELETE ON public.n8n_workflow_templates
  FOR EACH ROW EXECUTE FUNCTION public.prevent_template_modification();
CREATE TRIGGER enforce_template_immutability_truncate
  BEFORE TRUNCATE ON public.n8n_workflow_templates
  FOR EACH STATEMENT EXECUTE FUNCTION public.prevent_template_modification();
CREATE TRIGGER n8n_workflow_templates_audit
  AFTER INSERT ON public.n8n_workflow_templates
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('slug', 'file_hash');

-- One live mapping per activation: the runtime state of the client's n8n workflow copy.
CREATE TABLE public.n8n_mappings (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- live n8n resources: they are torn down before their owner can be deleted
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE RESTRICT,
  activation_request_id uuid NOT NULL
    REFERENCES public.installation_requests (id) ON DELETE RESTRICT,
  automation_id uuid REFERENCES public.automation_agents (id) ON DELETE RESTRICT,
  bundle_id uuid REFERENCES public.automation_bundles (id) ON DELETE RESTRICT,
  n8n_workflow_ids text[] NOT NULL DEFAULT '{}',
  n8n_credential_ids text[] NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'pending' CONSTRAINT valid_n8n_status CHECK (status IN (
    'pending', 'provisioning', 'active', 'paused', 'error', 'deactivated', 'revoked'
  )),
  provisioned_at timestamptz,
  last_sync_at timestamptz,
  error_message text,
  metadata jsonb NOT NULL DEFAULT '{}',
  credentials_reference_id text,
  last_webhook_response jsonb,
  webhook_status text NOT NULL DEFAULT 'pending'
    CHECK (webhook_status IN ('pending', 'success', 'error')),
  webhook_url text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX n8n_mappings_one_live_per_activation
  ON public.n8n_mappings (activation_request_id) WHERE status <> 'revoked';
CREATE INDEX n8n_mappings_user_idx ON public.n8n_mappings (user_id);
CREATE INDEX n8n_mappings_status_idx ON public.n8n_mappings (status);

-- Connect-Once credentials of a user's integrations, encrypted (aerelion.vault).
CREATE TABLE public.integration_connections (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,  -- credentials go
  activation_request_id uuid REFERENCES public.installation_requests (id) ON DELETE CASCADE,
  provider text NOT NULL CHECK (provider ~ '^[a-z0-9_]+$'),
  status text NOT NULL DEFAULT 'required' CONSTRAINT valid_status CHECK (status IN (
    'required', 'connected', 'revoked', 'error', 'expired', 'archived'
  )),
  encrypted_payload text,
  encryption_iv text,
  encryption_tag text,
  granted_scopes text[],
  connected_email text,
  expires_at timestamptz,
  key_version integer NOT NULL DEFAULT 1 CHECK (key_version >= 1),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((encrypted_payload IS NULL) = (encryption_iv IS NULL)
     AND (encrypted_payload IS NULL) = (encryption_tag IS NULL))
);
CREATE UNIQUE INDEX integration_connections_live_provider_key
  ON public.integration_connections (user_id, provider)
  WHERE status NOT IN ('archived', 'revoked');
CREATE INDEX integration_connections_user_status_idx
  ON public.integration_connections (user_id, status);
CREATE INDEX integration_connections_key_version_idx
  ON public.integration_connections (key_version);

-- Per-activation secrets a client submits, encrypted (aerelion.vault).
CREATE TABLE public.activation_credentials (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  request_id uuid NOT NULL REFERENCES public.installation_requests (id) ON DELETE CASCADE,
  credential_type text NOT NULL,
  service_name text NOT NULL,
  encrypted_data text NOT NULL,
  encryption_iv text NOT NULL,
  encryption_tag text NOT NULL,
  status text NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'revoked', 'expired', 'pending_verification')),
  last_verified_at timestamptz,
  expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  created_by text NOT NULL,
  revoked_at timestamptz,
  revoked_by text,
  revocation_reason text,
  metadata jsonb NOT NULL DEFAULT '{}',
  key_version integer NOT NULL DEFAULT 1 CHECK (key_version >= 1),
  UNIQUE (request_id, credential_type)
);
CREATE INDEX activation_credentials_status_idx ON public.activation_credentials (status);
CREATE INDEX activation_credentials_key_version_idx ON public.activation_credentials (key_version);

-- Human verification (THS) state; only the server sets it.
CREATE TABLE public.sovereign_bridge (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL UNIQUE REFERENCES auth.users (id) ON DELETE CASCADE,  -- sessions go
  is_human_verified boolean NOT NULL DEFAULT false,
  verification_source text NOT NULL DEFAULT 'THS_LAYER',
  veracity_score numeric NOT NULL DEFAULT 0 CHECK (veracity_score BETWEEN 0 AND 100),
  behavioral_data jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- When a client is deleted their activation requests are kept (anonymised), but the
-- credentials they submitted go with them.
CREATE FUNCTION public.forget_credentials_of_deleted_owner()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  DELETE FROM public.activation_credentials WHERE request_id = NEW.id;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.forget_credentials_of_deleted_owner()
  FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER installation_requests_owner_deleted
  AFTER UPDATE OF user_id ON public.installation_requests
  FOR EACH ROW WHEN (OLD.user_id IS NOT NULL AND NEW.user_id IS NULL)
  EXECUTE FUNCTION public.forget_credentials_of_deleted_owner();

CREATE TRIGGER n8n_mappings_set_updated_at BEFORE UPDATE ON public.n8n_mappings
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER integration_connections_set_updated_at BEFORE UPDATE ON public.integration_connections
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER activation_credentials_set_updated_at BEFORE UPDATE ON public.activation_credentials
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER sovereign_bridge_set_updated_at BEFORE UPDATE ON public.sovereign_bridge
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

ALTER TABLE public.installation_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.installation_requests FORCE ROW LEVEL SECURITY;
ALTER TABLE public.n8n_workflow_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.n8n_workflow_templates FORCE ROW LEVEL SECURITY;
ALTER TABLE public.n8n_mappings ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.n8n_mappings FORCE ROW LEVEL SECURITY;
ALTER TABLE public.integration_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.integration_connections FORCE ROW LEVEL SECURITY;
ALTER TABLE public.activation_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.activation_credentials FORCE ROW LEVEL SECURITY;
ALTER TABLE public.sovereign_bridge ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sovereign_bridge FORCE ROW LEVEL SECURITY;

CREATE POLICY installation_requests_select_own ON public.installation_requests
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
CREATE POLICY installation_requests_admin_update ON public.installation_requests
  FOR UPDATE TO authenticated
  USING ((SELECT public.is_admin())) WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY n8n_workflow_templates_select_admin ON public.n8n_workflow_templates
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY n8n_mappings_select_own ON public.n8n_mappings
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
CREATE POLICY integration_connections_select_own ON public.integration_connections
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
CREATE POLICY activation_credentials_select_own ON public.activation_credentials
  FOR SELECT TO authenticated
  USING (
    (SELECT public.is_admin())
    OR EXISTS (
      SELECT 1 FROM public.installation_requests r
      WHERE r.id = request_id AND r.user_id = (SELECT auth.uid())
    )
  );
CREATE POLICY sovereign_bridge_select_own ON public.sovereign_bridge
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));

REVOKE ALL ON TABLE public.installation_requests, public.n8n_workflow_templates,
  public.n8n_mappings, public.integration_connections, public.activation_credentials,
  public.sovereign_bridge
  FROM PUBLIC, anon, authenticated, service_role;

-- Clients read their requests except the operators' internal fields (written and read by
-- the service role's tooling); admins adjust what the client sees (statuses move only
-- through the activation functions).
GRANT SELECT (
  id, name, email, company, purchased_item, preferred_systems, notes, created_at, status,
  customer_visible_status, status_updated_at, activation_eta, activation_notes_customer,
  purchase_id, automation_id, bundle_id, setup_window, awaiting_credentials_since,
  credentials_submitted_at, credentials_verified_at, credentials_count, user_id
) ON TABLE public.installation_requests TO authenticated;
GRANT UPDATE (activation_eta, activation_notes_customer, setup_window, reminders_disabled)
  ON TABLE public.installation_requests TO authenticated;
GRANT SELECT ON TABLE public.n8n_workflow_templates TO authenticated;
GRANT SELECT ON TABLE public.n8n_mappings TO authenticated;
-- Never the ciphertext columns.
GRANT SELECT (
  id, user_id, activation_request_id, provider, status, granted_scopes, connected_email,
  expires_at, key_version, created_at, updated_at
) ON TABLE public.integration_connections TO authenticated;
GRANT SELECT (
  id, request_id, credential_type, service_name, status, last_verified_at, expires_at,
  created_at, updated_at, created_by, revoked_at, revoked_by, revocation_reason, key_version
) ON TABLE public.activation_credentials TO authenticated;
GRANT SELECT (
  id, user_id, is_human_verified, verification_source, veracity_score, created_at, updated_at
) ON TABLE public.sovereign_bridge TO authenticated;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.installation_requests, public.n8n_mappings,
  public.integration_connections, public.activation_credentials, public.sovereign_bridge
  TO service_role;
GRANT SELECT, INSERT ON TABLE public.n8n_workflow_templates TO service_role;
