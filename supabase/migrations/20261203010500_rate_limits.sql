-- Rate limiting: an atomic counter per caller, action and fixed window, failing closed.
--
-- The counted identity comes from the caller, never from the arguments: a signed-in user
-- is always counted as `user:<their id>`, so nobody can fill someone else's budget. The
-- service role (which has already authenticated whoever it acts for) names the identity
-- inside the key, e.g. `hostinger-metrics:ip:203.0.113.7`.

CREATE TABLE public.rate_limits (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  identifier text NOT NULL CHECK (char_length(identifier) <= 100),
  action_type text NOT NULL CHECK (char_length(action_type) <= 200),
  window_start timestamptz NOT NULL,
  hits integer NOT NULL DEFAULT 1 CHECK (hits >= 1),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (identifier, action_type, window_start)
);
CREATE INDEX rate_limits_window_idx ON public.rate_limits (window_start);

ALTER TABLE public.rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.rate_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY rate_limits_select_admin ON public.rate_limits
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.rate_limits FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.rate_limits TO authenticated, service_role;

-- Count one hit of `p_key` for the caller in the current window of `p_window_seconds`;
-- true while the count is within `p_max`. One statement (INSERT … ON CONFLICT DO UPDATE),
-- so concurrent callers never both get the last slot. Errors propagate: callers refuse.
-- The hit belongs to the caller's transaction: check in a transaction of its own to
-- count attempts that later fail.
CREATE FUNCTION public.check_rate_limit(p_key text, p_max integer, p_window_seconds integer)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  caller text;
  this_window timestamptz;
  counted integer;
BEGIN
  IF p_key IS NULL OR p_key !~ '^[A-Za-z0-9_.:/@-]{1,200}$' THEN
    RAISE EXCEPTION 'rate limit key must be 1-200 characters of [A-Za-z0-9_.:/@-]'
      USING ERRCODE = '22023';
  END IF;
  IF p_max IS NULL OR p_max < 1 OR p_window_seconds IS NULL
     OR p_window_seconds < 1 OR p_window_seconds > 86400 THEN
    RAISE EXCEPTION 'rate limits need max >= 1 and a window of 1 to 86400 seconds'
      USING ERRCODE = '22023';
  END IF;
  caller := CASE
    WHEN auth.role() = 'service_role' THEN 'service'
    WHEN auth.role() = 'authenticated' AND auth.uid() IS NOT NULL THEN 'user:' || auth.uid()
  END;
  IF caller IS NULL THEN
    RAISE EXCEPTION 'rate limits count signed-in callers only' USING ERRCODE = '42501';
  END IF;
  this_window := to_timestamp(
    floor(extract(epoch FROM clock_timestamp()) / p_window_seconds) * p_window_seconds
  );
  INSERT INTO public.rate_limits AS r (identifier, action_type, window_start)
  VALUES (caller, p_key, this_window)
  ON CONFLICT (identifier, action_type, window_start)
    DO UPDATE SET hits = r.hits + 1
  RETURNING hits INTO counted;
  RETURN counted <= p_max;
END
$$;
REVOKE ALL ON FUNCTION public.check_rate_limit(text, integer, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.check_rate_limit(text, integer, integer)
  TO authenticated, service_role;

-- The same, refusing with HTTP 429 (SQLSTATE PT429) and how long to wait.
CREATE FUNCTION public.enforce_rate_limit(p_key text, p_max integer, p_window_seconds integer)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  wait integer;
BEGIN
  IF NOT public.check_rate_limit(p_key, p_max, p_window_seconds) THEN
    wait := p_window_seconds
      - (floor(extract(epoch FROM clock_timestamp()))::bigint % p_window_seconds)::integer;
    RAISE EXCEPTION 'Rate limit exceeded'
      USING ERRCODE = 'PT429', DETAIL = format('retry after %s seconds', wait),
            HINT = format('retry_after_seconds=%s', wait);
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.enforce_rate_limit(text, integer, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.enforce_rate_limit(text, integer, integer)
  TO authenticated, service_role;
