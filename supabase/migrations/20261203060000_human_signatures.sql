-- THS ("the human signature"), verified and enforced by the server.
--
-- verify-human-signature scores a challenge and, when human, issues a signed token and
-- stores its record here (the token's SHA-256, its user, purpose and expiry). The token
-- travels in the `X-THS-Token` header, which reaches SQL in `request.headers` (our runtime
-- sets it as PostgREST does), and the sensitive functions check the record themselves, so
-- the gate also holds through PostgREST `/rpc`. Users can no longer mark themselves human.

CREATE TABLE public.human_signatures (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,  -- sessions go
  jti text NOT NULL UNIQUE CHECK (char_length(jti) BETWEEN 16 AND 100),
  purpose text NOT NULL CHECK (purpose ~ '^[a-z][a-z0-9_.-]{0,39}$'),
  token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
  veracity_score numeric NOT NULL CHECK (veracity_score BETWEEN 0 AND 100),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX human_signatures_user_idx ON public.human_signatures (user_id, expires_at DESC);

ALTER TABLE public.human_signatures ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.human_signatures FORCE ROW LEVEL SECURITY;
CREATE POLICY human_signatures_select_own ON public.human_signatures
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
REVOKE ALL ON TABLE public.human_signatures FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT (id, user_id, jti, purpose, veracity_score, expires_at, revoked_at, created_at)
  ON TABLE public.human_signatures TO authenticated;
GRANT SELECT ON TABLE public.human_signatures TO service_role;

-- Until when the user's verification holds (it expires server-side now).
ALTER TABLE public.sovereign_bridge ADD COLUMN verified_until timestamptz;
GRANT SELECT (verified_until) ON TABLE public.sovereign_bridge TO authenticated;

-- Record a passed challenge and the token issued for it (service role: the
-- verify-human-signature function, after scoring).
CREATE FUNCTION public.record_human_verification(
  p_user_id uuid,
  p_veracity_score numeric,
  p_behavioral_data jsonb,
  p_jti text,
  p_purpose text,
  p_token_hash bytea,
  p_expires_at timestamptz
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.human_signatures
    (user_id, jti, purpose, token_hash, veracity_score, expires_at)
  VALUES (p_user_id, p_jti, p_purpose, p_token_hash, p_veracity_score, p_expires_at);
  INSERT INTO public.sovereign_bridge
    (user_id, is_human_verified, veracity_score, behavioral_data, verification_source,
     verified_until)
  VALUES (p_user_id, true, p_veracity_score, coalesce(p_behavioral_data, '{}'),
          'THS_BEHAVIORAL_ENTROPY', p_expires_at)
  ON CONFLICT (user_id) DO UPDATE
    SET is_human_verified = true,
        veracity_score = EXCLUDED.veracity_score,
        behavioral_data = EXCLUDED.behavioral_data,
        verification_source = EXCLUDED.verification_source,
        verified_until = EXCLUDED.verified_until;
END
$$;
REVOKE ALL ON FUNCTION public.record_human_verification(uuid, numeric, jsonb, text, text, bytea, timestamptz)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_human_verification(uuid, numeric, jsonb, text, text, bytea, timestamptz)
  TO service_role;

-- Whether this request carries a valid human signature of the caller for `p_purpose`:
-- the `x-ths-token` header's SHA-256 names a stored, unexpired, unrevoked record of
-- auth.uid(). Only the server that issued the token knows its text.
CREATE FUNCTION public.has_human_signature(p_purpose text DEFAULT 'ths')
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.human_signatures
    WHERE token_hash = sha256(convert_to(
            nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb ->> 'x-ths-token',
            'UTF8'))
      AND user_id = auth.uid()
      AND purpose = p_purpose
      AND expires_at > now()
      AND revoked_at IS NULL
  )
$$;
REVOKE ALL ON FUNCTION public.has_human_signature(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.has_human_signature(text) TO authenticated, service_role;

-- The gate of sensitive operations: the service role (operator tools, which hold the
-- database credentials and name their actor) passes; everyone else needs a signature.
CREATE FUNCTION public.assert_human_signature(p_purpose text DEFAULT 'ths')
RETURNS void
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF auth.role() = 'service_role' THEN
    RETURN;
  END IF;
  IF NOT public.has_human_signature(p_purpose) THEN
    RAISE EXCEPTION 'a human signature is required'
      USING ERRCODE = 'PT403', HINT = 'pass the token from verify-human-signature in X-THS-Token';
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.assert_human_signature(text) FROM PUBLIC, anon, authenticated, service_role;

-- Audit rows name operator tools as their actor (`cli:<user>` in the JWT's `actor`).
CREATE OR REPLACE FUNCTION public.audit_event(
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
      'actor', coalesce(auth.uid()::text, left(auth.jwt() ->> 'actor', 100)),
      'actor_role', coalesce(auth.role(), session_user::text)
    ),
    auth.uid()
  )
  RETURNING id
$$;

-- WAR_ROOM needs a human signature (admins); everything else as before.
CREATE OR REPLACE FUNCTION public.set_operational_mode(p_mode text)
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
  IF p_mode = 'WAR_ROOM' THEN
    PERFORM public.assert_human_signature('ths');
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

-- Mode transitions by operator tools name their actor too (`changed_by` = `cli:<user>`).
CREATE OR REPLACE FUNCTION public.handle_nexus_mode_change()
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
      'changed_by', coalesce(NEW.updated_by::text, left(auth.jwt() ->> 'actor', 100)),
      'changed_at', NEW.updated_at
    ),
    NEW.updated_by
  );
  RETURN NULL;
END
$$;
