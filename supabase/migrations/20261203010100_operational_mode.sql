-- Operational mode: STEALTH | SENTINEL | WAR_ROOM, one row, changed only through
-- set_operational_mode(), every transition audited by trg_nexus_mode_change.

CREATE TABLE public.nexus_config (
  id text PRIMARY KEY DEFAULT 'singleton' CHECK (id = 'singleton'),
  operational_mode text NOT NULL DEFAULT 'STEALTH'
    CHECK (operational_mode IN ('STEALTH', 'SENTINEL', 'WAR_ROOM')),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by uuid REFERENCES auth.users (id) ON DELETE SET NULL
);
INSERT INTO public.nexus_config (id, operational_mode) VALUES ('singleton', 'STEALTH');

ALTER TABLE public.nexus_config ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.nexus_config FORCE ROW LEVEL SECURITY;
CREATE POLICY nexus_config_select_admin ON public.nexus_config
  FOR SELECT TO authenticated
  USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.nexus_config FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.nexus_config TO authenticated, service_role;

-- The audit row of a transition, in the original system's format.
CREATE FUNCTION public.handle_nexus_mode_change()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF OLD.operational_mode IS NOT DISTINCT FROM NEW.operational_mode THEN
    RETURN NULL;
  END IF;
  INSERT INTO public.edge_function_logs (function_name, level, message, details, user_id)
  VALUES (
    'nexus_config_trigger',
    CASE WHEN NEW.operational_mode = 'WAR_ROOM' THEN 'error' ELSE 'info' END,
    format('OPERATIONAL_MODE_TRANSITION: %s → %s',
           coalesce(OLD.operational_mode, 'INIT'), NEW.operational_mode),
    jsonb_build_object(
      'previous_mode', OLD.operational_mode,
      'new_mode', NEW.operational_mode,
      'changed_by', NEW.updated_by,
      'changed_at', NEW.updated_at
    ),
    NEW.updated_by
  );
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.handle_nexus_mode_change()
  FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER trg_nexus_mode_change
  AFTER UPDATE OF operational_mode ON public.nexus_config
  FOR EACH ROW EXECUTE FUNCTION public.handle_nexus_mode_change();

-- Switch the mode (admins and the service role). Who changed it comes from the caller's
-- JWT (`auth.uid()`), never from the input. Setting the current mode changes nothing.
CREATE FUNCTION public.set_operational_mode(p_mode text)
RETURNS public.nexus_config
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  result public.nexus_config;
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins change the operational mode' USING ERRCODE = '42501';
  END IF;
  IF p_mode IS NULL OR p_mode NOT IN ('STEALTH', 'SENTINEL', 'WAR_ROOM') THEN
    RAISE EXCEPTION 'unknown operational mode'
      USING ERRCODE = '22023', HINT = 'STEALTH, SENTINEL or WAR_ROOM';
  END IF;
  UPDATE public.nexus_config
  SET operational_mode = p_mode, updated_at = now(), updated_by = auth.uid()
  WHERE id = 'singleton' AND operational_mode IS DISTINCT FROM p_mode
  RETURNING * INTO result;
  IF NOT FOUND THEN
    SELECT * INTO result FROM public.nexus_config WHERE id = 'singleton';
  END IF;
  RETURN result;
END
$$;
REVOKE ALL ON FUNCTION public.set_operational_mode(text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.set_operational_mode(text) TO authenticated, service_role;
