-- The command center: agent heartbeats and their derived state, the live provenance log
-- (its queries, its indexes, a NOTIFY per inserting statement and one-time stream
-- tickets), the system status and the after-action report's telemetry.

-- -- Heartbeats ---------------------------------------------------------------------------

-- The log level a heartbeat's status means (the original's: ERROR error, DRIFT warn).
CREATE FUNCTION public.heartbeat_log_level(p_status text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT CASE p_status WHEN 'ERROR' THEN 'error' WHEN 'DRIFT' THEN 'warn' ELSE 'info' END
$$;
REVOKE ALL ON FUNCTION public.heartbeat_log_level(text) FROM PUBLIC, anon, authenticated, service_role;

-- Insert one heartbeat of a registered agent, every field checked with a clear message.
CREATE FUNCTION public.insert_agent_heartbeat(
  p_agent_id text, p_status text, p_message text, p_metadata jsonb
)
RETURNS public.agent_heartbeats
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  beat public.agent_heartbeats;
BEGIN
  IF p_status IS NULL OR p_status NOT IN ('NOMINAL', 'PROCESSING', 'DRIFT', 'ERROR') THEN
    RAISE EXCEPTION 'Invalid status'
      USING ERRCODE = '22023', HINT = 'NOMINAL, PROCESSING, DRIFT or ERROR';
  END IF;
  IF char_length(coalesce(p_message, '')) > 1000 THEN
    RAISE EXCEPTION 'message is longer than 1000 characters' USING ERRCODE = '22023';
  END IF;
  IF p_metadata IS NOT NULL AND (jsonb_typeof(p_metadata) <> 'object'
                                 OR pg_column_size(p_metadata) > 16384) THEN
    RAISE EXCEPTION 'metadata must be a JSON object of at most 16 KiB' USING ERRCODE = '22023';
  END IF;
  INSERT INTO public.agent_heartbeats (agent_id, status, message, metadata)
  VALUES (p_agent_id, p_status, coalesce(p_message, ''), coalesce(p_metadata, '{}'))
  RETURNING * INTO beat;
  RETURN beat;
END
$$;
REVOKE ALL ON FUNCTION public.insert_agent_heartbeat(text, text, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;

-- A heartbeat from an agent's workflow (agent-heartbeat, behind its shared secret), with
-- the level and message of the request's log row as the original wrote them.
CREATE FUNCTION public.record_agent_heartbeat(
  p_agent_id text, p_status text DEFAULT 'NOMINAL', p_message text DEFAULT '',
  p_metadata jsonb DEFAULT '{}'
)
RETURNS TABLE (
  id uuid, agent_id text, status text, message text, metadata jsonb, created_at timestamptz,
  log_level text, log_message text
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  beat public.agent_heartbeats;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM public.agent_registry r WHERE r.id = p_agent_id) THEN
    RAISE EXCEPTION 'Invalid agent_id' USING ERRCODE = 'PT400';
  END IF;
  beat := public.insert_agent_heartbeat(p_agent_id, coalesce(p_status, 'NOMINAL'), p_message,
                                        p_metadata);
  RETURN QUERY SELECT beat.id, beat.agent_id, beat.status, beat.message, beat.metadata,
    beat.created_at, public.heartbeat_log_level(beat.status),
    format('%s: %s', beat.agent_id, coalesce(nullif(beat.message, ''), beat.status));
END
$$;
REVOKE ALL ON FUNCTION public.record_agent_heartbeat(text, text, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_agent_heartbeat(text, text, text, jsonb) TO service_role;

-- An admin's manual pulse (nexus-pulse): the status is checked now (the original took any
-- string), the telemetry kept with who sent it.
CREATE FUNCTION public.record_manual_pulse(
  p_agent_id text, p_status text DEFAULT 'NOMINAL', p_telemetry jsonb DEFAULT '{}'
)
RETURNS public.agent_heartbeats
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF NOT public.is_admin() THEN
    RAISE EXCEPTION 'Forbidden' USING ERRCODE = '42501';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM public.agent_registry WHERE id = p_agent_id) THEN
    RAISE EXCEPTION 'Agent not registered' USING ERRCODE = 'PT404';
  END IF;
  IF p_telemetry IS NOT NULL AND jsonb_typeof(p_telemetry) <> 'object' THEN
    RAISE EXCEPTION 'telemetry must be a JSON object' USING ERRCODE = '22023';
  END IF;
  RETURN public.insert_agent_heartbeat(
    p_agent_id, coalesce(p_status, 'NOMINAL'), 'MANUAL_PULSE_SIGNAL',
    coalesce(p_telemetry, '{}') || jsonb_build_object(
      'triggered_by', auth.uid(), 'source', 'nexus_pulse', 'timestamp', now()));
END
$$;
REVOKE ALL ON FUNCTION public.record_manual_pulse(text, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_manual_pulse(text, text, jsonb) TO authenticated;

-- Operators only (admins, or the service role).
CREATE FUNCTION public.assert_operator()
RETURNS void
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'Admin access required' USING ERRCODE = '42501';
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.assert_operator() FROM PUBLIC, anon, authenticated, service_role;

-- Every agent with its newest heartbeat and its state: that heartbeat's status, or
-- OFFLINE when it is older than twice the agent's heartbeat_interval_s (derived, never
-- stored: an agent goes offline by staying silent).
CREATE FUNCTION public.agent_states()
RETURNS TABLE (
  agent_id text, codename text, module text, sort_order integer, state text,
  last_status text, last_message text, last_heartbeat_at timestamptz,
  heartbeat_interval_s integer
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
BEGIN
  PERFORM public.assert_operator();
  RETURN QUERY
  SELECT r.id, r.codename, r.module, r.sort_order,
         CASE WHEN last.created_at IS NULL
                OR last.created_at < now() - make_interval(secs => 2 * r.heartbeat_interval_s)
              THEN 'OFFLINE' ELSE last.status END,
         last.status, last.message, last.created_at, r.heartbeat_interval_s
  FROM public.agent_registry r
  LEFT JOIN LATERAL (
    SELECT h.status, h.message, h.created_at FROM public.agent_heartbeats h
    WHERE h.agent_id = r.id ORDER BY h.created_at DESC LIMIT 1
  ) AS last ON true
  ORDER BY r.sort_order, r.id;
END
$$;
REVOKE ALL ON FUNCTION public.agent_states() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.agent_states() TO authenticated, service_role;

-- -- The provenance log ---------------------------------------------------------------------

-- Newest-first pages by sequence number, also when filtered by level, function or agent.
DROP INDEX public.edge_function_logs_level_idx;  -- four values: useless alone
CREATE INDEX edge_function_logs_level_seq_idx ON public.edge_function_logs (level, seq);
CREATE INDEX edge_function_logs_function_seq_idx
  ON public.edge_function_logs (function_name, seq);
CREATE INDEX edge_function_logs_agent_seq_idx
  ON public.edge_function_logs ((details ->> 'agent_id'), seq)
  WHERE details ? 'agent_id';

-- One NOTIFY per inserting statement, carrying the newest sequence number: listeners
-- (the live page, `aerelion logs --follow`) then read what is new, under their own rights.
CREATE FUNCTION public.notify_edge_function_logs()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  newest bigint;
BEGIN
  SELECT max(seq) INTO newest FROM new_rows;
  IF newest IS NOT NULL THEN
    PERFORM pg_catalog.pg_notify('edge_function_logs', newest::text);
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.notify_edge_function_logs()
  FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER edge_function_logs_notify
  AFTER INSERT ON public.edge_function_logs
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION public.notify_edge_function_logs();

-- A page of the log for operators: newest first before `p_before` (a sequence number), or
-- oldest first after `p_after` (what is new since the last row shown); filtered by level,
-- function, agent (`details.agent_id`) and a moment it must not be older than.
CREATE FUNCTION public.provenance_log(
  p_before bigint DEFAULT NULL, p_after bigint DEFAULT NULL, p_limit integer DEFAULT 100,
  p_level text DEFAULT NULL, p_function text DEFAULT NULL, p_agent text DEFAULT NULL,
  p_since timestamptz DEFAULT NULL
)
RETURNS TABLE (
  seq bigint, id uuid, created_at timestamptz, function_name text, level text, message text,
  status_code integer, duration_ms integer, agent_id text
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
BEGIN
  PERFORM public.assert_operator();
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'limit must be 1 to 1000' USING ERRCODE = '22023';
  END IF;
  IF p_level IS NOT NULL AND p_level NOT IN ('debug', 'info', 'warn', 'error') THEN
    RAISE EXCEPTION 'unknown level' USING ERRCODE = '22023', HINT = 'debug, info, warn or error';
  END IF;
  IF p_after IS NOT NULL THEN
    RETURN QUERY
    SELECT l.seq, l.id, l.created_at, l.function_name, l.level, l.message, l.status_code,
           l.duration_ms, l.details ->> 'agent_id'
    FROM public.edge_function_logs l
    WHERE l.seq > p_after
      AND (p_level IS NULL OR l.level = p_level)
      AND (p_function IS NULL OR l.function_name = p_function)
      AND (p_agent IS NULL OR (l.details ? 'agent_id' AND l.details ->> 'agent_id' = p_agent))
      AND (p_since IS NULL OR l.created_at >= p_since)
    ORDER BY l.seq
    LIMIT p_limit;
  ELSE
    RETURN QUERY
    SELECT l.seq, l.id, l.created_at, l.function_name, l.level, l.message, l.status_code,
           l.duration_ms, l.details ->> 'agent_id'
    FROM public.edge_function_logs l
    WHERE (p_before IS NULL OR l.seq < p_before)
      AND (p_level IS NULL OR l.level = p_level)
      AND (p_function IS NULL OR l.function_name = p_function)
      AND (p_agent IS NULL OR (l.details ? 'agent_id' AND l.details ->> 'agent_id' = p_agent))
      AND (p_since IS NULL OR l.created_at >= p_since)
    ORDER BY l.seq DESC
    LIMIT p_limit;
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.provenance_log(bigint, bigint, integer, text, text, text, timestamptz)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.provenance_log(bigint, bigint, integer, text, text, text, timestamptz)
  TO authenticated, service_role;

-- The page's header: the mode, the seven agents, and the original's counts over the newest
-- 1,000 rows (events, errors, warnings, average duration, error rate).
CREATE FUNCTION public.provenance_summary()
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  counts jsonb;
BEGIN
  PERFORM public.assert_operator();
  SELECT jsonb_build_object(
    'events', count(*),
    'errors', count(*) FILTER (WHERE w.level = 'error'),
    'warnings', count(*) FILTER (WHERE w.level = 'warn'),
    'avg_duration_ms', coalesce(round(avg(w.duration_ms)), 0),
    'error_rate', CASE WHEN count(*) = 0 THEN 0
                  ELSE round(100.0 * count(*) FILTER (WHERE w.level = 'error') / count(*), 1) END)
  INTO counts
  FROM (SELECT l.level, l.duration_ms FROM public.edge_function_logs l
        ORDER BY l.seq DESC LIMIT 1000) AS w;
  RETURN jsonb_build_object(
    'operational_mode', (SELECT operational_mode FROM public.nexus_config WHERE id = 'singleton'),
    'agents', (SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]') FROM public.agent_states() a),
    'stats', counts);
END
$$;
REVOKE ALL ON FUNCTION public.provenance_summary() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.provenance_summary() TO authenticated, service_role;

-- One-time tickets for the live stream: a browser's EventSource cannot send a header and a
-- JWT never goes in a URL, so the page trades its JWT for a ticket valid 60 s, used once.
-- Only the ticket's SHA-256 is stored.
CREATE TABLE public.log_stream_tickets (
  token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX log_stream_tickets_expires_idx ON public.log_stream_tickets (expires_at);
ALTER TABLE public.log_stream_tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.log_stream_tickets FORCE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE public.log_stream_tickets FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.log_stream_tickets TO service_role;

CREATE FUNCTION public.issue_log_stream_ticket(p_token_hash bytea)
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  expires timestamptz := now() + interval '60 seconds';
BEGIN
  IF auth.uid() IS NULL OR NOT public.is_admin() THEN
    RAISE EXCEPTION 'Admin access required' USING ERRCODE = '42501';
  END IF;
  IF p_token_hash IS NULL OR octet_length(p_token_hash) <> 32 THEN
    RAISE EXCEPTION 'a ticket is stored as its SHA-256' USING ERRCODE = '22023';
  END IF;
  DELETE FROM public.log_stream_tickets WHERE expires_at < now() - interval '1 hour';
  INSERT INTO public.log_stream_tickets (token_hash, user_id, expires_at)
  VALUES (p_token_hash, auth.uid(), expires);
  RETURN expires;
END
$$;
REVOKE ALL ON FUNCTION public.issue_log_stream_ticket(bytea)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.issue_log_stream_ticket(bytea) TO authenticated;

-- Spend a ticket: the admin it was issued to, once, within its 60 s (and still an admin).
CREATE FUNCTION public.redeem_log_stream_ticket(p_token_hash bytea)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  holder uuid;
BEGIN
  UPDATE public.log_stream_tickets SET used_at = now()
  WHERE token_hash = p_token_hash AND used_at IS NULL AND expires_at > now()
  RETURNING user_id INTO holder;
  IF holder IS NULL OR NOT public.user_is_admin(holder) THEN
    RAISE EXCEPTION 'The stream ticket is unknown, expired or already used'
      USING ERRCODE = 'PT401', HINT = 'ask for a new ticket';
  END IF;
  RETURN holder;
END
$$;
REVOKE ALL ON FUNCTION public.redeem_log_stream_ticket(bytea)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.redeem_log_stream_ticket(bytea) TO service_role;

-- -- Status and reports ---------------------------------------------------------------------

-- GET /status: what an operator looks at first.
CREATE FUNCTION public.system_status()
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  PERFORM public.assert_operator();
  RETURN jsonb_build_object(
    'checked_at', now(),
    'operational_mode', (SELECT operational_mode FROM public.nexus_config WHERE id = 'singleton'),
    'queue', (
      SELECT jsonb_build_object(
        'due', count(*) FILTER (WHERE status IN ('queued', 'retrying', 'waiting')
                                  AND scheduled_at <= now()),
        'scheduled', count(*) FILTER (WHERE status IN ('queued', 'retrying', 'waiting')
                                        AND scheduled_at > now()),
        'processing', count(*) FILTER (WHERE status = 'processing'),
        'failed_24h', count(*) FILTER (WHERE status = 'failed'
                                         AND updated_at > now() - interval '24 hours'),
        'oldest_due_at', min(scheduled_at) FILTER (WHERE status IN ('queued', 'retrying', 'waiting')
                                                     AND scheduled_at <= now()))
      FROM public.provisioning_queue
      WHERE status IN ('queued', 'retrying', 'waiting', 'processing')
         OR (status = 'failed' AND updated_at > now() - interval '24 hours')),
    'nodes', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', n.id, 'label', n.label, 'region', n.region, 'status', n.status,
        'current_load', n.current_load, 'max_capacity', n.max_capacity,
        'last_ping_at', n.last_ping_at) ORDER BY n.label, n.id), '[]')
      FROM public.n8n_instances n),
    'agents', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
        'agent_id', a.agent_id, 'codename', a.codename, 'state', a.state,
        'last_heartbeat_at', a.last_heartbeat_at)), '[]')
      FROM public.agent_states() a),
    'audit', jsonb_build_object(
      'unsealed_rows', (
        SELECT count(*) FROM public.edge_function_logs
        WHERE seq > coalesce((SELECT max(last_seq) FROM public.audit_checkpoints), 0)),
      'last_sealed_at', (SELECT max(created_at) FROM public.audit_checkpoints)),
    'webhooks', (
      SELECT jsonb_build_object(
        'received_1h', count(*) FILTER (WHERE received_at > now() - interval '1 hour'),
        'received_24h', count(*),
        'unmatched_24h', count(*) FILTER (WHERE outcome ILIKE '%no matching%'),
        'last_received_at', max(received_at))
      FROM public.stripe_events WHERE received_at > now() - interval '24 hours'),
    'notifications_unread', (SELECT count(*) FROM public.admin_notifications WHERE NOT read));
END
$$;
REVOKE ALL ON FUNCTION public.system_status() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.system_status() TO authenticated, service_role;

-- What the after-action report (AG-07) is built from, for the last `p_window_hours`:
-- heartbeats per agent, the log per function, the incidents, errors per hour.
CREATE FUNCTION public.aar_telemetry(p_window_hours integer DEFAULT 24)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  since timestamptz;
BEGIN
  PERFORM public.assert_operator();
  IF p_window_hours IS NULL OR p_window_hours NOT BETWEEN 1 AND 720 THEN
    RAISE EXCEPTION 'the window is 1 to 720 hours' USING ERRCODE = '22023';
  END IF;
  since := now() - make_interval(hours => p_window_hours);
  RETURN jsonb_build_object(
    'window_hours', p_window_hours,
    'since', since,
    'until', now(),
    'agents', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
        'agent_id', s.agent_id, 'codename', s.codename, 'module', s.module, 'state', s.state,
        'heartbeats', coalesce(h.total, 0), 'nominal', coalesce(h.nominal, 0),
        'processing', coalesce(h.processing, 0), 'drift', coalesce(h.drift, 0),
        'error', coalesce(h.errors, 0), 'last_message', s.last_message,
        'last_heartbeat_at', s.last_heartbeat_at) ORDER BY s.sort_order), '[]')
      FROM public.agent_states() s
      LEFT JOIN (
        SELECT agent_id, count(*) AS total,
               count(*) FILTER (WHERE status = 'NOMINAL') AS nominal,
               count(*) FILTER (WHERE status = 'PROCESSING') AS processing,
               count(*) FILTER (WHERE status = 'DRIFT') AS drift,
               count(*) FILTER (WHERE status = 'ERROR') AS errors
        FROM public.agent_heartbeats WHERE created_at >= since GROUP BY agent_id
      ) AS h ON h.agent_id = s.agent_id),
    'logs', (
      SELECT jsonb_build_object(
        'total', count(*), 'errors', count(*) FILTER (WHERE level = 'error'),
        'warnings', count(*) FILTER (WHERE level = 'warn'),
        'avg_duration_ms', coalesce(round(avg(duration_ms)), 0))
      FROM public.edge_function_logs WHERE created_at >= since),
    'functions', (
      SELECT coalesce(jsonb_agg(f ORDER BY f.total DESC, f.function_name), '[]')
      FROM (
        SELECT function_name, count(*) AS total,
               count(*) FILTER (WHERE level = 'error') AS errors,
               count(*) FILTER (WHERE level = 'warn') AS warnings,
               coalesce(round(avg(duration_ms)), 0) AS avg_duration_ms
        FROM public.edge_function_logs WHERE created_at >= since
        GROUP BY function_name ORDER BY count(*) DESC, function_name LIMIT 15
      ) AS f),
    'incidents', (
      SELECT coalesce(jsonb_agg(i ORDER BY i.created_at DESC), '[]')
      FROM (
        SELECT created_at, 'heartbeat' AS source, agent_id, status AS level, message
        FROM public.agent_heartbeats
        WHERE created_at >= since AND status IN ('DRIFT', 'ERROR')
        UNION ALL
        SELECT created_at, function_name, details ->> 'agent_id', level, message
        FROM public.edge_function_logs
        WHERE created_at >= since AND level = 'error'
        ORDER BY 1 DESC LIMIT 25
      ) AS i),
    'errors_by_hour', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
        'hour', b.hour, 'errors', coalesce(e.errors, 0), 'events', coalesce(e.events, 0))
        ORDER BY b.hour), '[]')
      FROM generate_series(date_trunc('hour', since), date_trunc('hour', now()),
                           interval '1 hour') AS b(hour)
      LEFT JOIN (
        SELECT date_trunc('hour', created_at) AS hour, count(*) AS events,
               count(*) FILTER (WHERE level = 'error') AS errors
        FROM public.edge_function_logs WHERE created_at >= since GROUP BY 1
      ) AS e ON e.hour = b.hour));
END
$$;
REVOKE ALL ON FUNCTION public.aar_telemetry(integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.aar_telemetry(integer) TO authenticated, service_role;
