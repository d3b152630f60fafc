-- Agents moved to another node: the deploy plan also names each agent's workflows on other
-- nodes, which the deploy removes there once the agent runs on its new node.

CREATE OR REPLACE FUNCTION public.agent_deploy_plan(p_node text DEFAULT NULL)
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
                            WHERE w.agent_id = r.id AND w.n8n_instance_id = node.id),
               'elsewhere', (
                 SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'n8n_instance_id', w.n8n_instance_id, 'workflow_id', w.workflow_id,
                          'credential_id', w.credential_id,
                          'node', jsonb_build_object('id', i.id, 'url', i.instance_url,
                                                     'api_key_secret', i.api_key_secret))
                        ORDER BY w.created_at), '[]')
                 FROM public.agent_workflows w
                 JOIN public.n8n_instances i ON i.id = w.n8n_instance_id
                 WHERE w.agent_id = r.id AND w.n8n_instance_id <> node.id))
             ORDER BY r.sort_order, r.id), '[]')
      FROM public.agent_registry r));
END
$$;

-- An agent's workflow removed from a node it no longer runs on (with its log row); whether
-- the node still runs any agent's workflow (if not, its heartbeat credential can go).
CREATE FUNCTION public.forget_agent_workflow(
  p_agent_id text, p_instance_id uuid, p_actor uuid DEFAULT NULL
)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  gone public.agent_workflows;
BEGIN
  DELETE FROM public.agent_workflows
  WHERE agent_id = p_agent_id AND n8n_instance_id = p_instance_id
  RETURNING * INTO gone;
  IF gone.id IS NOT NULL THEN
    INSERT INTO public.edge_function_logs (function_name, level, message, details, user_id)
    VALUES ('deploy-agent-workflows', 'info', format('WORKFLOW_REMOVED %s', p_agent_id),
            jsonb_build_object('agent_id', p_agent_id, 'workflow_id', gone.workflow_id,
                               'n8n_instance_id', p_instance_id, 'outcome', 'moved'),
            p_actor);
  END IF;
  RETURN EXISTS (SELECT 1 FROM public.agent_workflows WHERE n8n_instance_id = p_instance_id);
END
$$;
REVOKE ALL ON FUNCTION public.forget_agent_workflow(text, uuid, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.forget_agent_workflow(text, uuid, uuid) TO service_role;
