-- The Elite 7 on n8n: deploying the agents' heartbeat workflows (idempotently) and healing
-- them for real — deactivate and reactivate on the node, or redeploy what is missing — with
-- the outcome recorded in the log and raised to the operators when it fails.

ALTER TABLE public.agent_workflows
  -- the workflow as last deployed (what a redeploy posts again, what a deploy compares)
  ADD COLUMN definition jsonb CHECK (definition IS NULL OR jsonb_typeof(definition) = 'object'),
  -- the node's credential holding the heartbeat key, and a keyed fingerprint of that key
  -- (HMAC-SHA256 with the key itself: a changed key shows, the key does not)
  ADD COLUMN credential_id text CHECK (char_length(credential_id) <= 100),
  ADD COLUMN key_fingerprint text CHECK (key_fingerprint ~ '^[0-9a-f]{64}$'),
  ADD COLUMN last_heal_at timestamptz,
  ADD COLUMN last_heal_outcome text
    CHECK (last_heal_outcome IN ('restarted', 'redeployed', 'failed'));

INSERT INTO public.system_registry (namespace, key, value, description) VALUES
  ('agents', 'heal_interval_s', '60',
   'How often the worker looks for agents in DRIFT, ERROR or OFFLINE to heal'),
  ('agents', 'heal_cooldown_s', '900',
   'The least time between two automatic heals of one agent');

-- A node by id, URL or label; the error no longer repeats what was asked for (a reference
-- may be anything a caller typed, a secret included).
CREATE OR REPLACE FUNCTION public.n8n_instance_ref(p_ref text)
RETURNS public.n8n_instances
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  node public.n8n_instances;
BEGIN
  IF p_ref ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    SELECT * INTO node FROM public.n8n_instances WHERE id = p_ref::uuid;
  ELSE
    SELECT * INTO node FROM public.n8n_instances
    WHERE instance_url = rtrim(p_ref, '/') OR label = p_ref
    ORDER BY instance_url = rtrim(p_ref, '/') DESC LIMIT 1;
  END IF;
  IF node.id IS NULL THEN
    RAISE EXCEPTION 'No such n8n node' USING ERRCODE = 'PT404',
      HINT = 'a node is named by its id, base URL or label (aerelion nodes list)';
  END IF;
  RETURN node;
END
$$;

-- The node the agents' workflows go to: the one named, else the node they already run on
-- (when still active), else the active node with the lowest load ratio.
CREATE FUNCTION public.agent_deploy_plan(p_node text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  node public.n8n_instances;
BEGIN
  IF p_node IS NOT NULL THEN
    node := public.n8n_instance_ref(p_node);
    IF node.status <> 'active' THEN
      RAISE EXCEPTION 'n8n node % is %', node.instance_url, node.status USING ERRCODE = 'PT409';
    END IF;
  ELSE
    SELECT i.* INTO node FROM public.n8n_instances i
    WHERE i.status = 'active'
    ORDER BY (SELECT count(*) FROM public.agent_workflows w WHERE w.n8n_instance_id = i.id) DESC,
             i.current_load::numeric / i.max_capacity, i.max_capacity DESC, i.id
    LIMIT 1;
    IF node.id IS NULL THEN
      RAISE EXCEPTION 'No active n8n node is registered'
        USING ERRCODE = 'PT409', HINT = 'aerelion nodes add URL --capacity N --api-key-secret env:NAME';
    END IF;
  END IF;
  RETURN jsonb_build_object(
    'node', jsonb_build_object('id', node.id, 'url', node.instance_url,
                               'api_key_secret', node.api_key_secret),
    'agents', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'agent_id', r.id, 'codename', r.codename, 'module', r.module,
               'heartbeat_interval_s', r.heartbeat_interval_s,
               'workflow', (SELECT to_jsonb(w) FROM public.agent_workflows w
                            WHERE w.agent_id = r.id AND w.n8n_instance_id = node.id))
             ORDER BY r.sort_order, r.id), '[]')
      FROM public.agent_registry r));
END
$$;
REVOKE ALL ON FUNCTION public.agent_deploy_plan(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.agent_deploy_plan(text) TO service_role;

-- An agent's workflow deployed (created, updated, activated or redeployed) and verified
-- active on its node, with a log row naming the agent.
CREATE FUNCTION public.record_agent_workflow(
  p_agent_id text, p_instance_id uuid, p_workflow_id text, p_workflow_name text,
  p_definition jsonb, p_credential_id text, p_key_fingerprint text, p_outcome text,
  p_actor uuid DEFAULT NULL
)
RETURNS public.agent_workflows
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  saved public.agent_workflows;
BEGIN
  IF p_outcome NOT IN ('created', 'updated', 'activated', 'redeployed') THEN
    RAISE EXCEPTION 'unknown outcome %', left(p_outcome, 50) USING ERRCODE = '22023';
  END IF;
  INSERT INTO public.agent_workflows
    (agent_id, n8n_instance_id, workflow_id, workflow_name, active, last_verified_at,
     definition, credential_id, key_fingerprint)
  VALUES (p_agent_id, p_instance_id, p_workflow_id, p_workflow_name, true, now(),
          p_definition, p_credential_id, p_key_fingerprint)
  ON CONFLICT (agent_id, n8n_instance_id) DO UPDATE
  SET workflow_id = excluded.workflow_id, workflow_name = excluded.workflow_name,
      active = true, last_verified_at = now(), definition = excluded.definition,
      credential_id = excluded.credential_id, key_fingerprint = excluded.key_fingerprint
  RETURNING * INTO saved;
  INSERT INTO public.edge_function_logs (function_name, level, message, details, user_id)
  VALUES ('deploy-agent-workflows', 'info',
          format('WORKFLOW_DEPLOYED %s %s', p_agent_id, p_outcome),
          jsonb_build_object('agent_id', p_agent_id, 'workflow_id', p_workflow_id,
                             'n8n_instance_id', p_instance_id, 'outcome', p_outcome),
          p_actor);
  RETURN saved;
END
$$;
REVOKE ALL ON FUNCTION public.record_agent_workflow(
  text, uuid, text, text, jsonb, text, text, text, uuid
) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_agent_workflow(
  text, uuid, text, text, jsonb, text, text, text, uuid
) TO service_role;

-- What healing an agent works on: its state (derived by agent_states()) and its workflows
-- with their nodes.
CREATE FUNCTION public.agent_heal_target(p_agent_id text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  found jsonb;
BEGIN
  SELECT jsonb_build_object(
           'agent_id', s.agent_id, 'state', s.state, 'module', s.module,
           'workflows', (
             SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'n8n_instance_id', w.n8n_instance_id, 'workflow_id', w.workflow_id,
                      'workflow_name', w.workflow_name, 'definition', w.definition,
                      'credential_id', w.credential_id, 'key_fingerprint', w.key_fingerprint,
                      'node', jsonb_build_object('id', i.id, 'url', i.instance_url,
                                                 'api_key_secret', i.api_key_secret))
                    ORDER BY w.created_at), '[]')
             FROM public.agent_workflows w
             JOIN public.n8n_instances i ON i.id = w.n8n_instance_id
             WHERE w.agent_id = s.agent_id))
  INTO found
  FROM public.agent_states() s WHERE s.agent_id = p_agent_id;
  IF found IS NULL THEN
    RAISE EXCEPTION 'Agent not registered' USING ERRCODE = 'PT404';
  END IF;
  RETURN found;
END
$$;
REVOKE ALL ON FUNCTION public.agent_heal_target(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.agent_heal_target(text) TO service_role;

-- One heal of one agent workflow, as it ended: the workflow's state, a log row, and a
-- notification for the operators (auto_heal, or auto_heal_failure when it failed).
CREATE FUNCTION public.record_agent_heal(
  p_agent_id text, p_instance_id uuid, p_previous_state text, p_action text, p_ok boolean,
  p_workflow_id text, p_error text, p_trigger text, p_actor uuid DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  outcome text := CASE WHEN p_ok THEN p_action ELSE 'failed' END;
  notice public.admin_notifications;
BEGIN
  IF p_action NOT IN ('restarted', 'redeployed') OR p_trigger NOT IN ('admin', 'worker') THEN
    RAISE EXCEPTION 'unknown heal action or trigger' USING ERRCODE = '22023';
  END IF;
  UPDATE public.agent_workflows
  SET active = p_ok, last_heal_at = now(), last_heal_outcome = outcome,
      last_verified_at = CASE WHEN p_ok THEN now() ELSE last_verified_at END
  WHERE agent_id = p_agent_id AND n8n_instance_id = p_instance_id;
  INSERT INTO public.edge_function_logs (function_name, level, message, details, user_id)
  VALUES ('agent-auto-heal', CASE WHEN p_ok THEN 'info' ELSE 'error' END,
          CASE WHEN p_ok THEN format('AUTO_HEAL_VERIFIED %s %s', p_agent_id, p_action)
               ELSE format('AUTO_HEAL_FAILED %s: %s', p_agent_id, left(p_error, 500)) END,
          jsonb_build_object('agent_id', p_agent_id, 'action', p_action, 'ok', p_ok,
                             'previous_state', p_previous_state, 'trigger', p_trigger,
                             'workflow_id', p_workflow_id, 'n8n_instance_id', p_instance_id,
                             'error', left(p_error, 500)),
          p_actor);
  INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
  VALUES (
    CASE WHEN p_ok THEN 'auto_heal' ELSE 'auto_heal_failure' END,
    CASE WHEN p_ok THEN format('Auto-heal verified: %s %s', p_agent_id, p_action)
         ELSE format('CRITICAL: auto-heal of %s failed', p_agent_id) END,
    CASE WHEN p_ok
         THEN format('%s was %s; its workflow %s was %s and n8n reports it active.',
                     p_agent_id, p_previous_state, p_workflow_id, p_action)
         ELSE format('%s was %s; healing its workflow %s failed: %s', p_agent_id,
                     p_previous_state, coalesce(p_workflow_id, '(none)'), left(p_error, 2000)) END,
    CASE WHEN NOT p_ok THEN 'critical' WHEN p_previous_state = 'ERROR' THEN 'warning'
         ELSE 'info' END,
    jsonb_build_object('agent_id', p_agent_id, 'action', p_action, 'trigger', p_trigger,
                       'workflow_id', p_workflow_id, 'n8n_instance_id', p_instance_id))
  RETURNING * INTO notice;
  RETURN jsonb_build_object('outcome', outcome, 'notification_id', notice.id);
END
$$;
REVOKE ALL ON FUNCTION public.record_agent_heal(
  text, uuid, text, text, boolean, text, text, text, uuid
) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_agent_heal(
  text, uuid, text, text, boolean, text, text, text, uuid
) TO service_role;

-- The agents the worker heals now, claimed so that no other worker heals them too: in
-- DRIFT or ERROR, or OFFLINE although their workflow was verified active longer ago than
-- two heartbeat intervals (a fresh deploy has not had the time to beat); at most once per
-- `agents/heal_cooldown_s`.
CREATE FUNCTION public.claim_agent_heals()
RETURNS TABLE (agent_id text, state text)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH due AS (
    SELECT s.agent_id, s.state, s.heartbeat_interval_s FROM public.agent_states() s
    WHERE s.state IN ('DRIFT', 'ERROR', 'OFFLINE')
  ), claimed AS (
    UPDATE public.agent_workflows w SET last_heal_at = now()
    FROM due
    WHERE w.agent_id = due.agent_id
      AND (w.last_heal_at IS NULL OR w.last_heal_at < now() - make_interval(
             secs => public.registry_int('agents', 'heal_cooldown_s', 900)))
      AND (due.state <> 'OFFLINE' OR coalesce(w.last_verified_at, w.created_at)
             < now() - make_interval(secs => 2 * due.heartbeat_interval_s))
    RETURNING w.agent_id, due.state
  )
  SELECT DISTINCT c.agent_id, c.state FROM claimed c ORDER BY c.agent_id;
END
$$;
REVOKE ALL ON FUNCTION public.claim_agent_heals() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.claim_agent_heals() TO service_role;

CREATE FUNCTION public.agent_heal_interval_s()
RETURNS integer
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$ SELECT public.registry_int('agents', 'heal_interval_s', 60) $$;
REVOKE ALL ON FUNCTION public.agent_heal_interval_s() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.agent_heal_interval_s() TO service_role;

-- -- a client's automation ---------------------------------------------------------------

-- The live (active) mapping of an activation, for an operator's restart of its workflow.
CREATE FUNCTION public.n8n_mapping_heal_target(p_request_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  found jsonb;
BEGIN
  SELECT public.n8n_mapping_for_job(m.id) INTO found FROM public.n8n_mappings m
  WHERE m.activation_request_id = p_request_id AND m.status = 'active'
    AND cardinality(m.n8n_workflow_ids) > 0;
  IF found IS NULL THEN
    RAISE EXCEPTION 'No active automation for this activation' USING ERRCODE = 'PT404';
  END IF;
  RETURN found;
END
$$;
REVOKE ALL ON FUNCTION public.n8n_mapping_heal_target(uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.n8n_mapping_heal_target(uuid) TO service_role;

-- A client's workflow restarted (or not): its sync time, a log row, a notification.
CREATE FUNCTION public.record_mapping_heal(
  p_mapping_id uuid, p_ok boolean, p_error text, p_actor uuid
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  mapping public.n8n_mappings;
  notice public.admin_notifications;
BEGIN
  UPDATE public.n8n_mappings
  SET last_sync_at = CASE WHEN p_ok THEN now() ELSE last_sync_at END
  WHERE id = p_mapping_id RETURNING * INTO mapping;
  IF mapping.id IS NULL THEN
    RAISE EXCEPTION 'No such mapping' USING ERRCODE = 'PT404';
  END IF;
  INSERT INTO public.edge_function_logs (function_name, level, message, details, user_id)
  VALUES ('agent-auto-heal', CASE WHEN p_ok THEN 'info' ELSE 'error' END,
          CASE WHEN p_ok THEN 'AUTO_HEAL_VERIFIED client automation restarted'
               ELSE format('AUTO_HEAL_FAILED client automation: %s', left(p_error, 500)) END,
          jsonb_build_object('mapping_id', mapping.id, 'ok', p_ok, 'trigger', 'admin',
                             'activation_request_id', mapping.activation_request_id,
                             'workflow_ids', to_jsonb(mapping.n8n_workflow_ids),
                             'error', left(p_error, 500)),
          p_actor);
  INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
  VALUES (CASE WHEN p_ok THEN 'auto_heal' ELSE 'auto_heal_failure' END,
          CASE WHEN p_ok THEN 'Auto-heal verified: a client automation was restarted'
               ELSE 'CRITICAL: auto-heal of a client automation failed' END,
          CASE WHEN p_ok
               THEN format('The workflows of activation %s were restarted and n8n reports them active.',
                           mapping.activation_request_id)
               ELSE format('Restarting the workflows of activation %s failed: %s',
                           mapping.activation_request_id, left(p_error, 2000)) END,
          CASE WHEN p_ok THEN 'info' ELSE 'critical' END,
          jsonb_build_object('mapping_id', mapping.id,
                             'activation_request_id', mapping.activation_request_id))
  RETURNING * INTO notice;
  RETURN jsonb_build_object('outcome', CASE WHEN p_ok THEN 'restarted' ELSE 'failed' END,
                            'notification_id', notice.id);
END
$$;
REVOKE ALL ON FUNCTION public.record_mapping_heal(uuid, boolean, text, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_mapping_heal(uuid, boolean, text, uuid) TO service_role;
