-- The system registry (runtime settings operators change) and the admin audit trail.
--
-- Every admin change leaves an `edge_function_logs` row naming who did what — never a
-- secret value: `audit_event()` writes it, and `audit_row_change()` calls it for every
-- INSERT/UPDATE/DELETE on the tables operators manage.

-- Whether a given user is an admin: the one definition, used by is_admin() (the caller)
-- and by SECURITY DEFINER functions that decide about another user. Internal only.
CREATE FUNCTION public.user_is_admin(p_user_id uuid)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.user_roles WHERE user_id = p_user_id AND role = 'admin'
  )
$$;
REVOKE ALL ON FUNCTION public.user_is_admin(uuid) FROM PUBLIC, anon, authenticated, service_role;

CREATE OR REPLACE FUNCTION public.is_admin()
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT public.user_is_admin(auth.uid())
$$;

-- Users read their own log rows (the client's activity view); admins read all (earlier).
CREATE POLICY edge_function_logs_select_own ON public.edge_function_logs
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- One audit row. Actor and role come from the caller's JWT claims (or the connecting
-- role for operator tools), never from the arguments.
CREATE FUNCTION public.audit_event(
  p_action text,
  p_message text,
  p_details jsonb DEFAULT '{}',
  p_level text DEFAULT 'info'
)
RETURNS uuid
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
  INSERT INTO public.edge_function_logs (function_name, level, message, details, user_id)
  VALUES (
    'audit',
    p_level,
    left(p_message, 2000),
    coalesce(p_details, '{}'::jsonb) || jsonb_build_object(
      'action', p_action,
      'actor', auth.uid(),
      'actor_role', coalesce(auth.role(), session_user::text)
    ),
    auth.uid()
  )
  RETURNING id
$$;
REVOKE ALL ON FUNCTION public.audit_event(text, text, jsonb, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.audit_event(text, text, jsonb, text) TO service_role;

-- Row trigger: audits a change to an operator-managed table. TG_ARGV names the columns
-- that identify the row; only column NAMES of an update are recorded, never values.
CREATE FUNCTION public.audit_row_change()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
  new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
  identity jsonb := '{}';
  changed text[];
  name text;
BEGIN
  FOREACH name IN ARRAY TG_ARGV LOOP
    identity := identity || jsonb_build_object(name, coalesce(new_row, old_row) -> name);
  END LOOP;
  IF TG_OP = 'UPDATE' THEN
    SELECT array_agg(key ORDER BY key) INTO changed
    FROM jsonb_each(new_row) AS n(key, value)
    WHERE n.value IS DISTINCT FROM old_row -> n.key;
    IF changed IS NULL OR changed <@ ARRAY['updated_at'] THEN
      RETURN NULL;  -- nothing really changed
    END IF;
  END IF;
  PERFORM public.audit_event(
    lower(TG_OP) || ':' || TG_TABLE_NAME,
    format('ADMIN_CHANGE: %s %s %s', TG_OP, TG_TABLE_NAME, identity::text),
    jsonb_build_object('table', TG_TABLE_NAME, 'operation', TG_OP, 'row', identity)
      || CASE WHEN changed IS NULL THEN '{}'::jsonb
              ELSE jsonb_build_object('changed_columns', to_jsonb(changed)) END
  );
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.audit_row_change() FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER user_roles_audit
  AFTER INSERT OR UPDATE OR DELETE ON public.user_roles
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('user_id', 'role');

-- The registry: the source of truth for settings backend functions read at run time.
-- Where an environment variable exists for the same setting, the environment wins.
CREATE TABLE public.system_registry (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  namespace text NOT NULL CHECK (namespace ~ '^[a-z][a-z0-9_]*$'),
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]*$'),
  value text CHECK (char_length(value) <= 10000),
  description text,
  is_secret boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT uq_system_registry_ns_key UNIQUE (namespace, key)
);
CREATE INDEX system_registry_namespace_idx ON public.system_registry (namespace);
CREATE TRIGGER system_registry_set_updated_at
  BEFORE UPDATE ON public.system_registry
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER system_registry_audit
  AFTER INSERT OR UPDATE OR DELETE ON public.system_registry
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('namespace', 'key', 'is_secret');

ALTER TABLE public.system_registry ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.system_registry FORCE ROW LEVEL SECURITY;
CREATE POLICY system_registry_select_admin ON public.system_registry
  FOR SELECT TO authenticated
  USING (NOT is_secret AND (SELECT public.is_admin()));
REVOKE ALL ON TABLE public.system_registry FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.system_registry TO authenticated, service_role;

INSERT INTO public.system_registry (namespace, key, value, description) VALUES
  ('stripe', 'price_pulse', 'price_1SzdaCJAQcpzy6vVzFLVYkgd', 'THE PULSE – monthly subscription price ID'),
  ('stripe', 'price_operator', 'price_1SzdaEJAQcpzy6vVucQakAuA', 'THE OPERATOR – monthly subscription price ID'),
  ('stripe', 'price_ghost', 'price_1SzdaGJAQcpzy6vVyMmTifQW', 'THE GHOST – one-time payment price ID'),
  ('stripe', 'product_pulse', 'prod_TxYhnRbOluZBaB', 'THE PULSE product ID'),
  ('stripe', 'product_operator', 'prod_TxYhoVock3Bxgb', 'THE OPERATOR product ID'),
  ('stripe', 'product_ghost', 'prod_TxYhXs1DPZsWtZ', 'THE GHOST product ID'),
  ('app', 'domain', 'app.aerelion.systems', 'The client application domain (redirect URLs are built from it)'),
  ('app', 'functions_url', 'https://app.aerelion.systems/functions/v1', 'Public base URL of the edge functions; AERELION_PUBLIC_URL overrides it'),
  ('hostinger', 'api_base', 'https://developers.hostinger.com', 'Hostinger public API base URL');

-- A registry value. Secret rows are for the service role only; other rows for the
-- service role and admins.
CREATE FUNCTION public.registry_get(p_namespace text, p_key text)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  found public.system_registry;
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins and the service role read the registry' USING ERRCODE = '42501';
  END IF;
  SELECT * INTO found FROM public.system_registry WHERE namespace = p_namespace AND key = p_key;
  IF found.is_secret AND auth.role() IS DISTINCT FROM 'service_role' THEN
    RAISE EXCEPTION 'registry value %/% is secret', p_namespace, p_key USING ERRCODE = '42501';
  END IF;
  RETURN found.value;
END
$$;
REVOKE ALL ON FUNCTION public.registry_get(text, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.registry_get(text, text) TO authenticated, service_role;

-- Create or change a registry value (admins and the service role); audited by trigger.
CREATE FUNCTION public.registry_set(
  p_namespace text,
  p_key text,
  p_value text,
  p_description text DEFAULT NULL,
  p_is_secret boolean DEFAULT false
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins and the service role change the registry' USING ERRCODE = '42501';
  END IF;
  INSERT INTO public.system_registry (namespace, key, value, description, is_secret)
  VALUES (p_namespace, p_key, p_value, p_description, p_is_secret)
  ON CONFLICT (namespace, key) DO UPDATE
    SET value = EXCLUDED.value,
        description = coalesce(EXCLUDED.description, public.system_registry.description),
        is_secret = EXCLUDED.is_secret;
END
$$;
REVOKE ALL ON FUNCTION public.registry_set(text, text, text, text, boolean)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.registry_set(text, text, text, text, boolean)
  TO authenticated, service_role;
