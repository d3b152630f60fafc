-- Retention: old heartbeats, finished queue jobs and spent rate-limit windows age out on
-- schedules kept in the registry (namespace `retention`), through one audited function.
-- Realtime: the tables the original system published, where Supabase's publication exists.

INSERT INTO public.system_registry (namespace, key, value, description) VALUES
  ('retention', 'agent_heartbeats_days', '30', 'Heartbeats older than this are removed'),
  ('retention', 'provisioning_queue_days', '7', 'Finished (completed, failed, cancelled) jobs older than this are removed'),
  ('retention', 'rate_limits_hours', '24', 'Rate-limit windows that ended longer ago are removed');

-- The retention period of `p_key` as an interval (NULL: keep for ever).
CREATE FUNCTION public.retention_period(p_key text, p_unit text)
RETURNS interval
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT make_interval(
    days => CASE WHEN p_unit = 'days' THEN value::integer ELSE 0 END,
    hours => CASE WHEN p_unit = 'hours' THEN value::integer ELSE 0 END
  )
  FROM public.system_registry
  WHERE namespace = 'retention' AND key = p_key AND value ~ '^[0-9]+$'
$$;
REVOKE ALL ON FUNCTION public.retention_period(text, text) FROM PUBLIC, anon, authenticated, service_role;

-- Apply every retention rule now; returns how many rows each removed, and audits it.
CREATE FUNCTION public.apply_retention()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  period interval;
  removed integer;
  report jsonb := '{}';
BEGIN
  period := public.retention_period('agent_heartbeats_days', 'days');
  IF period IS NOT NULL THEN
    DELETE FROM public.agent_heartbeats WHERE created_at < now() - period;
    GET DIAGNOSTICS removed = ROW_COUNT;
    report := report || jsonb_build_object('agent_heartbeats', removed);
  END IF;
  period := public.retention_period('provisioning_queue_days', 'days');
  IF period IS NOT NULL THEN
    DELETE FROM public.provisioning_queue
    WHERE status IN ('completed', 'failed', 'cancelled') AND updated_at < now() - period;
    GET DIAGNOSTICS removed = ROW_COUNT;
    report := report || jsonb_build_object('provisioning_queue', removed);
  END IF;
  period := public.retention_period('rate_limits_hours', 'hours');
  IF period IS NOT NULL THEN
    DELETE FROM public.rate_limits WHERE window_start < now() - interval '1 day' - period;
    GET DIAGNOSTICS removed = ROW_COUNT;
    report := report || jsonb_build_object('rate_limits', removed);
  END IF;
  IF EXISTS (SELECT 1 FROM jsonb_each(report) WHERE value::integer > 0) THEN
    PERFORM public.audit_event(
      'retention', 'RETENTION: removed rows past their retention period', report
    );
  END IF;
  RETURN report;
END
$$;
REVOKE ALL ON FUNCTION public.apply_retention() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.apply_retention() TO service_role;

-- Published columns are those clients may read: never ciphertext or behavioural data
-- (column lists need PostgreSQL 15, which Supabase runs).
DO $$
DECLARE
  published record;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime') THEN
    RETURN;
  END IF;
  FOR published IN
    SELECT * FROM (VALUES
      ('edge_function_logs', ''),
      ('admin_notifications', ''),
      ('agent_heartbeats', ''),
      ('nexus_config', ''),
      ('agent_registry', ''),
      ('sovereign_bridge',
       '(id, user_id, is_human_verified, verification_source, veracity_score, created_at, updated_at)'),
      ('vps_instances',
       '(id, user_id, virtual_machine_id, status, ip_address, hostname, plan, region, ssh_key_label, '
       'n8n_instance_url, credentials_viewed_at, agents_deployed, agents_deployed_at, '
       'agent_deploy_error, triggered_by, activation_request_id, notes, n8n_key_version, '
       'ssh_key_version, created_at, updated_at)')
    ) AS t(name, columns)
  LOOP
    IF NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_publication_tables
      WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = published.name
    ) THEN
      EXECUTE format(
        'ALTER PUBLICATION supabase_realtime ADD TABLE public.%I %s', published.name, published.columns
      );
    END IF;
  END LOOP;
END
$$;
