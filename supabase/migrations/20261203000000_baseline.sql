-- Baseline shared by every later migration.
--
-- Functions are created explicitly without EXECUTE for PUBLIC, anon or authenticated:
-- hosted Supabase projects (and PostgreSQL itself) grant EXECUTE on new functions to
-- everyone by default, so each migration revokes and then grants exactly what a role needs.

-- Keeps `updated_at` current on tables that carry it (BEFORE UPDATE trigger).
CREATE OR REPLACE FUNCTION public.set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
  NEW.updated_at := pg_catalog.now();
  RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION public.set_updated_at() FROM PUBLIC, anon, authenticated, service_role;
