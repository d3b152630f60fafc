-- On hosted Supabase, call the queue-processor function every minute with pg_cron and
-- pg_net, where both are already installed (this migration never creates an extension).
-- The URL (registry app/functions_url) and the secret (Supabase Vault secret
-- `aerelion_cron_secret`, else the secret registry row queue/cron_secret) are read when the
-- job runs, never stored in the schedule. Elsewhere run `aerelion worker` instead.

INSERT INTO public.system_registry (namespace, key, value, description, is_secret) VALUES
  ('queue', 'cron_secret', NULL,
   'CRON_SECRET for the scheduled queue-processor call (or Vault secret aerelion_cron_secret)',
   true);

-- One call of queue-processor through pg_net; returns pg_net's request id (NULL when
-- something is missing, with a warning saying what).
CREATE FUNCTION public.trigger_queue_processor()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  base_url text;
  secret text;
  request_id bigint;
BEGIN
  SELECT value INTO base_url FROM public.system_registry
  WHERE namespace = 'app' AND key = 'functions_url';
  IF pg_catalog.to_regclass('vault.decrypted_secrets') IS NOT NULL THEN
    EXECUTE 'SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1'
      INTO secret USING 'aerelion_cron_secret';
  END IF;
  IF secret IS NULL THEN
    SELECT value INTO secret FROM public.system_registry
    WHERE namespace = 'queue' AND key = 'cron_secret';
  END IF;
  IF base_url IS NULL OR secret IS NULL THEN
    RAISE WARNING 'queue-processor not called: app/functions_url or the cron secret is not set';
    RETURN NULL;
  END IF;
  IF pg_catalog.to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') IS NULL THEN
    RAISE WARNING 'queue-processor not called: pg_net is not installed';
    RETURN NULL;
  END IF;
  EXECUTE 'SELECT net.http_post(url := $1, body := $2, headers := $3, timeout_milliseconds := $4)'
    INTO request_id
    USING rtrim(base_url, '/') || '/queue-processor',
          jsonb_build_object('triggered_at', now()),
          jsonb_build_object('Content-Type', 'application/json',
                             'Authorization', 'Bearer ' || secret),
          30000;
  RETURN request_id;
END
$$;
REVOKE ALL ON FUNCTION public.trigger_queue_processor() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.trigger_queue_processor() TO service_role;

-- Schedule the call every minute when pg_cron and pg_net are both installed; returns the
-- pg_cron job id (scheduling the same name again replaces the job), NULL otherwise.
CREATE FUNCTION public.schedule_queue_processor()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job_id bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')
     OR pg_catalog.to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') IS NULL THEN
    RAISE NOTICE 'pg_cron and pg_net are not both installed: run `aerelion worker` instead';
    RETURN NULL;
  END IF;
  EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job_id
    USING 'aerelion-queue-processor', '* * * * *', 'SELECT public.trigger_queue_processor()';
  RETURN job_id;
END
$$;
REVOKE ALL ON FUNCTION public.schedule_queue_processor() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.schedule_queue_processor() TO service_role;

SELECT public.schedule_queue_processor();
