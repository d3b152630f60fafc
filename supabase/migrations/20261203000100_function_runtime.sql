-- What the function runtime needs: identities and roles, and the request log.
--
-- Every request to an edge function leaves exactly one `edge_function_logs` row, written
-- through `record_edge_function_log` by the service role; nobody writes the table directly.

-- Roles of application users (not database roles).
CREATE TYPE public.app_role AS ENUM ('admin', 'user');

CREATE TABLE public.user_roles (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  role public.app_role NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, role)
);
COMMENT ON TABLE public.user_roles IS
  'Application roles. Granted by the service role (aerelion users create --admin); users read their own.';

-- Whether the caller (auth.uid()) is an admin. SECURITY DEFINER so that RLS policies can
-- ask without recursing into user_roles' own policies.
CREATE FUNCTION public.is_admin()
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.user_roles
    WHERE user_id = auth.uid() AND role = 'admin'
  )
$$;
REVOKE ALL ON FUNCTION public.is_admin() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.is_admin() TO authenticated, service_role;

-- Whether a user has a role. Callable by users, so it checks the caller itself: a user may
-- ask about themselves, admins and services about anyone.
CREATE FUNCTION public.has_role(_user_id uuid, _role public.app_role)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role'
     AND _user_id IS DISTINCT FROM auth.uid()
     AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins may look up the roles of other users'
      USING ERRCODE = '42501';
  END IF;
  RETURN EXISTS (
    SELECT 1 FROM public.user_roles WHERE user_id = _user_id AND role = _role
  );
END
$$;
REVOKE ALL ON FUNCTION public.has_role(uuid, public.app_role)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.has_role(uuid, public.app_role) TO authenticated, service_role;

ALTER TABLE public.user_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY user_roles_select_own ON public.user_roles
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
REVOKE ALL ON TABLE public.user_roles FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.user_roles TO authenticated;
GRANT SELECT, INSERT, DELETE ON TABLE public.user_roles TO service_role;

-- Profiles: one per user, created when the user signs up.
CREATE TABLE public.profiles (
  id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  display_name text CHECK (char_length(display_name) <= 200),
  avatar_url text CHECK (char_length(avatar_url) <= 2000),
  full_name text CHECK (char_length(full_name) <= 200),
  company_name text CHECK (char_length(company_name) <= 200),
  timezone text DEFAULT 'America/New_York' CHECK (char_length(timezone) <= 64),
  primary_goal text CHECK (char_length(primary_goal) <= 500),
  goals text[] NOT NULL DEFAULT '{}' CHECK (cardinality(goals) <= 50),
  onboarding_complete boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER profiles_set_updated_at
  BEFORE UPDATE ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

CREATE FUNCTION public.handle_new_user()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.profiles (id, display_name)
  VALUES (NEW.id, left(NEW.raw_user_meta_data ->> 'display_name', 200))
  ON CONFLICT (id) DO NOTHING;
  RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION public.handle_new_user() FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER on_auth_user_created
  AFTER INSERT ON auth.users
  FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();

ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles FORCE ROW LEVEL SECURITY;
CREATE POLICY profiles_select_own ON public.profiles
  FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
CREATE POLICY profiles_update_own ON public.profiles
  FOR UPDATE TO authenticated
  USING (id = (SELECT auth.uid()))
  WITH CHECK (id = (SELECT auth.uid()));
REVOKE ALL ON TABLE public.profiles FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.profiles TO authenticated;
GRANT UPDATE (
  display_name, avatar_url, full_name, company_name, timezone, primary_goal, goals,
  onboarding_complete
) ON TABLE public.profiles TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.profiles TO service_role;

-- The request log and provenance trail. Columns as the original system's.
CREATE TABLE public.edge_function_logs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  function_name text NOT NULL CHECK (char_length(function_name) <= 100),
  level text NOT NULL DEFAULT 'info' CHECK (level IN ('debug', 'info', 'warn', 'error')),
  message text NOT NULL CHECK (char_length(message) <= 2000),
  details jsonb,
  user_id uuid,  -- no foreign key: the trail outlives the user
  ip_address text CHECK (char_length(ip_address) <= 64),
  duration_ms integer CHECK (duration_ms >= 0),
  status_code integer CHECK (status_code BETWEEN 100 AND 599),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX edge_function_logs_created_at_idx ON public.edge_function_logs (created_at DESC);
CREATE INDEX edge_function_logs_function_created_idx
  ON public.edge_function_logs (function_name, created_at DESC);
CREATE INDEX edge_function_logs_level_idx ON public.edge_function_logs (level);
CREATE INDEX edge_function_logs_user_id_idx ON public.edge_function_logs (user_id);

ALTER TABLE public.edge_function_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.edge_function_logs FORCE ROW LEVEL SECURITY;
CREATE POLICY edge_function_logs_select_admin ON public.edge_function_logs
  FOR SELECT TO authenticated
  USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.edge_function_logs FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.edge_function_logs TO authenticated, service_role;

-- One row per request, written by the runtime as the service role. The level follows the
-- status unless the caller names one; text is bounded so a log row never fails a request.
CREATE FUNCTION public.record_edge_function_log(
  p_function_name text,
  p_message text,
  p_status_code integer,
  p_duration_ms integer,
  p_user_id uuid DEFAULT NULL,
  p_ip_address text DEFAULT NULL,
  p_details jsonb DEFAULT NULL,
  p_level text DEFAULT NULL
)
RETURNS uuid
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
  INSERT INTO public.edge_function_logs (
    function_name, level, message, details, user_id, ip_address, duration_ms, status_code
  )
  VALUES (
    left(p_function_name, 100),
    coalesce(
      p_level,
      CASE WHEN p_status_code >= 500 THEN 'error'
           WHEN p_status_code >= 400 THEN 'warn'
           ELSE 'info' END
    ),
    left(coalesce(p_message, ''), 2000),
    p_details,
    p_user_id,
    left(p_ip_address, 64),
    greatest(p_duration_ms, 0),
    p_status_code
  )
  RETURNING id
$$;
REVOKE ALL ON FUNCTION public.record_edge_function_log(
  text, text, integer, integer, uuid, text, jsonb, text
) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_edge_function_log(
  text, text, integer, integer, uuid, text, jsonb, text
) TO service_role;
