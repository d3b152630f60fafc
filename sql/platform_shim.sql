-- The Supabase platform shim: what hosted Supabase provides and plain PostgreSQL lacks.
--
-- Applied by `aerelion db push` before the migrations on plain PostgreSQL only (never on
-- Supabase, where these objects belong to the platform). Every step is guarded, so the
-- shim creates only what is missing and can run again at any time.
--
-- Setting `aerelion.default_grants` (set for this transaction by the caller):
--   legacy  the default privileges older hosted projects have: every table, function and
--           sequence created in `public` is granted to anon, authenticated, service_role
--   none    newer projects: nothing is granted by default, migrations GRANT explicitly

-- Roles, as the Supabase image creates them. Roles are shared by the whole cluster, so a
-- concurrent run in another database may create one first: that is fine.
DO $shim$
DECLARE
  spec record;
BEGIN
  FOR spec IN
    SELECT * FROM (VALUES
      ('anon',          'NOLOGIN NOINHERIT'),
      ('authenticated', 'NOLOGIN NOINHERIT'),
      ('service_role',  'NOLOGIN NOINHERIT BYPASSRLS'),
      ('authenticator', 'LOGIN NOINHERIT')
    ) AS r(name, options)
  LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = spec.name) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I %s', spec.name, spec.options);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
      END;
    END IF;
  END LOOP;
END
$shim$;

-- Role membership and settings are cluster-wide too; only touch them when they differ,
-- so concurrent runs in other databases do not update the same catalog rows.
DO $shim$
DECLARE
  api_role text;
BEGIN
  FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT pg_catalog.pg_has_role('authenticator', api_role, 'MEMBER') THEN
      EXECUTE format('GRANT %I TO authenticator', api_role);
    END IF;
    -- The role that applies migrations and serves requests acts as the API roles,
    -- as `postgres` does on Supabase.
    IF NOT pg_catalog.pg_has_role(current_user, api_role, 'MEMBER') THEN
      EXECUTE format('GRANT %I TO %I', api_role, current_user);
    END IF;
  END LOOP;
  IF NOT EXISTS (
    SELECT FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
    WHERE r.rolname = 'anon' AND s.setdatabase = 0
      AND 'statement_timeout=3s' = ANY (s.setconfig)
  ) THEN
    ALTER ROLE anon SET statement_timeout = '3s';
  END IF;
  IF NOT EXISTS (
    SELECT FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
    WHERE r.rolname = 'authenticated' AND s.setdatabase = 0
      AND 'statement_timeout=8s' = ANY (s.setconfig)
  ) THEN
    ALTER ROLE authenticated SET statement_timeout = '8s';
  END IF;
END
$shim$;

-- Schemas.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

-- auth.users: the columns Supabase Auth keeps. A row needs only `id` and `email`.
CREATE TABLE IF NOT EXISTS auth.users (
  instance_id uuid,
  id uuid NOT NULL PRIMARY KEY,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change_token_new varchar(255),
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  phone text UNIQUE DEFAULT NULL,
  phone_confirmed_at timestamptz,
  phone_change text DEFAULT '',
  phone_change_token varchar(255) DEFAULT '',
  phone_change_sent_at timestamptz,
  confirmed_at timestamptz GENERATED ALWAYS AS (LEAST(email_confirmed_at, phone_confirmed_at)) STORED,
  email_change_token_current varchar(255) DEFAULT '',
  email_change_confirm_status smallint DEFAULT 0
    CHECK (email_change_confirm_status >= 0 AND email_change_confirm_status <= 2),
  banned_until timestamptz,
  reauthentication_token varchar(255) DEFAULT '',
  reauthentication_sent_at timestamptz,
  is_sso_user boolean NOT NULL DEFAULT false,
  deleted_at timestamptz,
  is_anonymous boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_partial_key
  ON auth.users (email) WHERE is_sso_user = false;

-- auth.uid(), auth.role(), auth.email(), auth.jwt(): read the claims PostgREST sets in
-- `request.jwt.claims` (and the per-claim settings of PostgREST < 9), exactly as Supabase.
-- `nullif(…, '')` matters: a setting used earlier on the same connection reads back as ''.
DO $shim$
BEGIN
  IF pg_catalog.to_regprocedure('auth.uid()') IS NULL THEN
    CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $fn$
      SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $fn$;
    COMMENT ON FUNCTION auth.uid() IS 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
  END IF;
  IF pg_catalog.to_regprocedure('auth.role()') IS NULL THEN
    CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $fn$
      SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
        (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
      )::text
    $fn$;
    COMMENT ON FUNCTION auth.role() IS 'Deprecated. Use auth.jwt() -> ''role'' instead.';
  END IF;
  IF pg_catalog.to_regprocedure('auth.email()') IS NULL THEN
    CREATE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $fn$
      SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.email', true), ''),
        (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
      )::text
    $fn$;
    COMMENT ON FUNCTION auth.email() IS 'Deprecated. Use auth.jwt() -> ''email'' instead.';
  END IF;
  IF pg_catalog.to_regprocedure('auth.jwt()') IS NULL THEN
    CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $fn$
      SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')
      )::jsonb
    $fn$;
  END IF;
END
$shim$;
GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.email(), auth.jwt()
  TO anon, authenticated, service_role;

-- Realtime's publication exists on every Supabase database; migrations may add tables.
DO $shim$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime') THEN
    CREATE PUBLICATION supabase_realtime;
  END IF;
END
$shim$;

-- Default privileges in `public` for objects the migrating role creates.
DO $shim$
DECLARE
  mode text := coalesce(nullif(pg_catalog.current_setting('aerelion.default_grants', true), ''), 'legacy');
  verb text;
BEGIN
  IF mode NOT IN ('legacy', 'none') THEN
    RAISE EXCEPTION 'aerelion.default_grants must be legacy or none, not %', mode;
  END IF;
  verb := CASE mode WHEN 'legacy' THEN 'GRANT ALL ON %s TO' ELSE 'REVOKE ALL ON %s FROM' END;
  EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public '
    || format(verb, 'TABLES') || ' anon, authenticated, service_role';
  EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public '
    || format(verb, 'FUNCTIONS') || ' anon, authenticated, service_role';
  EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public '
    || format(verb, 'SEQUENCES') || ' anon, authenticated, service_role';
END
$shim$;
