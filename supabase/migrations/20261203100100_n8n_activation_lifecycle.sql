-- The activation lifecycle of a client's n8n workflow copy, and its run-time credentials.
--
-- Every decision is here; the application only talks to n8n in between. Functions are for
-- the service role: the edge functions pass the verified caller as `p_actor` (NULL when the
-- service itself acts, as the queue worker does), and these functions decide:
--   * the activation request must be the actor's (else 403) and `has_entitlement()` must
--     cover it, within the tier's number of live activations — unless an admin acts;
--   * one live mapping per activation (the unique key of 20261203010300); one attempt holds
--     it at a time (`claim_id`, expiring), so concurrent calls create one workflow;
--   * capacity is reserved before n8n is called and given back when the attempt fails with
--     nothing left on n8n, and on revoke;
--   * revoked is final: resume and retrigger are refused (403 "Activation revoked").

-- Who acts on an activation request: the service (NULL), its owner, or an admin.
CREATE FUNCTION public.n8n_activation_request(p_request_id uuid, p_actor uuid, p_lock boolean)
RETURNS public.installation_requests
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  request public.installation_requests;
BEGIN
  IF p_lock THEN
    SELECT * INTO request FROM public.installation_requests WHERE id = p_request_id FOR UPDATE;
  ELSE
    SELECT * INTO request FROM public.installation_requests WHERE id = p_request_id;
  END IF;
  IF request.id IS NULL THEN
    RAISE EXCEPTION 'Activation request not found' USING ERRCODE = 'PT404';
  END IF;
  IF p_actor IS NOT NULL AND request.user_id IS DISTINCT FROM p_actor
     AND NOT public.user_is_admin(p_actor) THEN
    RAISE EXCEPTION 'ACCESS_DENIED: ACTIVATION_NOT_OWNED_BY_USER' USING ERRCODE = 'PT403';
  END IF;
  RETURN request;
END
$$;
REVOKE ALL ON FUNCTION public.n8n_activation_request(uuid, uuid, boolean)
  FROM PUBLIC, anon, authenticated, service_role;

-- The providers an automation needs connected (lower case).
CREATE FUNCTION public.automation_required_providers(p_automation_id uuid)
RETURNS text[]
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT coalesce(array_agg(DISTINCT lower(item ->> 'provider') ORDER BY lower(item ->> 'provider')), '{}')
  FROM public.automation_agents a
  CROSS JOIN LATERAL jsonb_array_elements(a.required_integrations) AS item
  WHERE a.id = p_automation_id AND item ->> 'provider' IS NOT NULL
$$;
REVOKE ALL ON FUNCTION public.automation_required_providers(uuid)
  FROM PUBLIC, anon, authenticated, service_role;

-- The node a mapping runs on, as the application needs it to reach n8n.
CREATE FUNCTION public.n8n_mapping_node(p_mapping public.n8n_mappings)
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT jsonb_build_object(
    'id', i.id, 'url', coalesce(i.instance_url, p_mapping.n8n_base_url),
    'api_key_secret', i.api_key_secret, 'runtime_secret', i.runtime_secret,
    'fallback', p_mapping.used_fallback, 'base_url', p_mapping.n8n_base_url)
  FROM (SELECT 1) AS one
  LEFT JOIN public.n8n_instances i ON i.id = p_mapping.n8n_instance_id
$$;
REVOKE ALL ON FUNCTION public.n8n_mapping_node(public.n8n_mappings)
  FROM PUBLIC, anon, authenticated, service_role;

-- Start (or take over) the activation of a request: checks, the mapping, the claim, the
-- reservation, and everything the application needs to build the copy. Outcome
-- `already` when the workflow is live; `claimed` otherwise.
CREATE FUNCTION public.begin_n8n_activation(p_request_id uuid, p_actor uuid)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  request public.installation_requests;
  agent public.automation_agents;
  template public.n8n_workflow_templates;
  mapping public.n8n_mappings;
  privileged boolean;
  required text[];
  missing text[];
  allowed integer;
  live bigint;
  reserved record;
BEGIN
  request := public.n8n_activation_request(p_request_id, p_actor, true);
  IF request.user_id IS NULL THEN
    RAISE EXCEPTION 'User not associated with activation. Contact support.' USING ERRCODE = 'PT409';
  END IF;
  IF request.status IN ('cancelled', 'completed') THEN
    RAISE EXCEPTION 'Activation request is %', request.status USING ERRCODE = 'PT409';
  END IF;
  IF request.automation_id IS NULL THEN
    RAISE EXCEPTION 'No automation linked to activation'
      USING ERRCODE = 'PT409', HINT = 'a bundle is activated through one request per automation';
  END IF;
  privileged := public.user_is_admin(p_actor) OR public.user_is_admin(request.user_id);
  IF NOT privileged THEN
    IF NOT public.has_entitlement(request.user_id, 'agent', request.automation_id) THEN
      RAISE EXCEPTION 'NOT_ENTITLED: no purchase or tier covers this automation'
        USING ERRCODE = 'PT403';
    END IF;
  END IF;

  INSERT INTO public.n8n_mappings (user_id, activation_request_id, automation_id, status)
  VALUES (request.user_id, request.id, request.automation_id, 'pending')
  ON CONFLICT (activation_request_id) WHERE status <> 'revoked' DO NOTHING;
  SELECT * INTO mapping FROM public.n8n_mappings
  WHERE activation_request_id = request.id AND status <> 'revoked' FOR UPDATE;

  IF mapping.status = 'active' AND cardinality(mapping.n8n_workflow_ids) > 0 THEN
    RETURN jsonb_build_object(
      'outcome', 'already', 'mapping_id', mapping.id,
      'workflow_id', mapping.n8n_workflow_ids[1], 'webhook_url', mapping.webhook_url,
      'credential_ids', to_jsonb(mapping.n8n_credential_ids));
  END IF;
  IF mapping.status = 'provisioning' AND mapping.claim_expires_at > now() THEN
    RAISE EXCEPTION 'ACTIVATION_IN_PROGRESS: another activation attempt is running'
      USING ERRCODE = 'PT409', HINT = 'retry_after_seconds=5';
  END IF;
  IF mapping.status = 'paused' THEN
    RAISE EXCEPTION 'The automation is paused: resume it instead' USING ERRCODE = 'PT409';
  END IF;

  IF NOT privileged THEN
    SELECT l.max_live_activations INTO allowed FROM public.entitlement_limits(request.user_id) AS l;
    SELECT count(*) INTO live FROM public.n8n_mappings
    WHERE user_id = request.user_id AND id <> mapping.id
      AND status IN ('pending', 'provisioning', 'active');
    IF allowed IS NOT NULL AND live >= allowed THEN
      RAISE EXCEPTION 'ACTIVATION_LIMIT_REACHED: your tier allows % live activation(s)', allowed
        USING ERRCODE = 'PT403';
    END IF;
  END IF;

  SELECT * INTO agent FROM public.automation_agents WHERE id = request.automation_id;
  IF agent.id IS NULL THEN
    RAISE EXCEPTION 'Automation not found' USING ERRCODE = 'PT409';
  END IF;
  IF cardinality(agent.n8n_template_ids) = 0 THEN
    RAISE EXCEPTION 'No template linked to automation' USING ERRCODE = 'PT409';
  END IF;
  SELECT * INTO template FROM public.n8n_workflow_templates
  WHERE id::text = agent.n8n_template_ids[1];
  IF template.id IS NULL THEN
    RAISE EXCEPTION 'Template not found' USING ERRCODE = 'PT409';
  END IF;
  required := public.automation_required_providers(agent.id);
  SELECT coalesce(array_agg(p ORDER BY p), '{}') INTO missing
  FROM unnest(required) AS p
  WHERE NOT EXISTS (
    SELECT 1 FROM public.integration_connections c
    WHERE c.user_id = request.user_id AND c.provider = p AND c.status = 'connected'
      AND c.encrypted_payload IS NOT NULL);
  IF cardinality(missing) > 0 THEN
    RAISE EXCEPTION 'Missing integrations: %', array_to_string(missing, ', ')
      USING ERRCODE = 'PT409';
  END IF;

  UPDATE public.n8n_mappings
  SET status = 'provisioning', claim_id = gen_random_uuid(),
      claim_expires_at = now() + make_interval(
        secs => public.registry_int('n8n', 'activation_lease_s', 300)),
      error_message = NULL, automation_id = agent.id,
      metadata = metadata || jsonb_build_object('started_at', now(), 'template_id', template.id)
  WHERE id = mapping.id
  RETURNING * INTO mapping;
  SELECT * INTO reserved FROM public.reserve_n8n_instance(mapping.id);
  SELECT * INTO mapping FROM public.n8n_mappings WHERE id = mapping.id;
  UPDATE public.installation_requests
  SET status = 'in_build', customer_visible_status = 'in_build', status_updated_at = now()
  WHERE id = request.id AND status IS DISTINCT FROM 'in_build';

  RETURN jsonb_build_object(
    'outcome', 'claimed',
    'mapping_id', mapping.id,
    'claim_id', mapping.claim_id,
    'activation_request_id', request.id,
    'client_label', coalesce(nullif(request.company, ''), nullif(request.name, ''),
                             split_part(request.email, '@', 1)),
    'node', public.n8n_mapping_node(mapping),
    'leftovers', jsonb_build_object(
      'workflow_ids', to_jsonb(mapping.n8n_workflow_ids),
      'credential_ids', to_jsonb(mapping.n8n_credential_ids)),
    'template', jsonb_build_object(
      'id', template.id, 'name', template.name, 'workflow', template.workflow_json),
    'integrations', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
        'id', c.id, 'provider', c.provider, 'ciphertext', c.encrypted_payload,
        'iv', c.encryption_iv, 'tag', c.encryption_tag, 'key_version', c.key_version)
        ORDER BY c.provider)
      FROM public.integration_connections c
      WHERE c.user_id = request.user_id AND c.status = 'connected'
        AND c.provider = ANY (required) AND c.encrypted_payload IS NOT NULL), '[]'::jsonb)
  );
END
$$;
REVOKE ALL ON FUNCTION public.begin_n8n_activation(uuid, uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.begin_n8n_activation(uuid, uuid) TO service_role;

-- The claim must still be held (else PT409: another attempt took over).
CREATE FUNCTION public.held_n8n_mapping(p_mapping_id uuid, p_claim_id uuid)
RETURNS public.n8n_mappings
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  mapping public.n8n_mappings;
BEGIN
  SELECT * INTO mapping FROM public.n8n_mappings WHERE id = p_mapping_id FOR UPDATE;
  IF mapping.id IS NULL OR mapping.claim_id IS DISTINCT FROM p_claim_id
     OR mapping.status <> 'provisioning' THEN
    RAISE EXCEPTION 'this activation attempt no longer holds the mapping' USING ERRCODE = 'PT409';
  END IF;
  RETURN mapping;
END
$$;
REVOKE ALL ON FUNCTION public.held_n8n_mapping(uuid, uuid) FROM PUBLIC, anon, authenticated, service_role;

-- What exists on n8n for this attempt so far (a crashed attempt's successor cleans it up).
CREATE FUNCTION public.record_n8n_resources(
  p_mapping_id uuid, p_claim_id uuid, p_base_url text, p_workflow_ids text[],
  p_credential_ids text[]
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  PERFORM public.held_n8n_mapping(p_mapping_id, p_claim_id);
  UPDATE public.n8n_mappings
  SET n8n_base_url = coalesce(p_base_url, n8n_base_url),
      n8n_workflow_ids = coalesce(p_workflow_ids, '{}'),
      n8n_credential_ids = coalesce(p_credential_ids, '{}')
  WHERE id = p_mapping_id;
END
$$;
REVOKE ALL ON FUNCTION public.record_n8n_resources(uuid, uuid, text, text[], text[])
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_n8n_resources(uuid, uuid, text, text[], text[])
  TO service_role;

-- The copy is live: the mapping, the request and the client say so.
CREATE FUNCTION public.finish_n8n_activation(
  p_mapping_id uuid, p_claim_id uuid, p_base_url text, p_workflow_id text,
  p_credential_ids text[], p_webhook_url text
)
RETURNS public.n8n_mappings
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  mapping public.n8n_mappings := public.held_n8n_mapping(p_mapping_id, p_claim_id);
BEGIN
  UPDATE public.n8n_mappings
  SET status = 'active', n8n_base_url = coalesce(p_base_url, n8n_base_url),
      n8n_workflow_ids = ARRAY[p_workflow_id], n8n_credential_ids = coalesce(p_credential_ids, '{}'),
      webhook_url = p_webhook_url, provisioned_at = now(), last_sync_at = now(),
      claim_id = NULL, claim_expires_at = NULL, error_message = NULL,
      metadata = metadata || jsonb_build_object(
        'provisioned_at', now(), 'webhook_path', 'aerelion/' || activation_request_id)
  WHERE id = p_mapping_id
  RETURNING * INTO mapping;
  UPDATE public.installation_requests
  SET status = 'live', customer_visible_status = 'live', status_updated_at = now()
  WHERE id = mapping.activation_request_id;
  INSERT INTO public.client_notifications (user_id, type, title, body, severity, metadata)
  VALUES (mapping.user_id, 'automation_activated', 'Automation activated',
          'Your automation is live.', 'success',
          jsonb_build_object('activation_request_id', mapping.activation_request_id));
  RETURN mapping;
END
$$;
REVOKE ALL ON FUNCTION public.finish_n8n_activation(uuid, uuid, text, text, text[], text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.finish_n8n_activation(uuid, uuid, text, text, text[], text)
  TO service_role;

-- The attempt failed. With `p_cleaned` nothing is left on n8n and the capacity goes back;
-- otherwise what is left stays recorded (and reserved) for the next attempt to remove.
CREATE FUNCTION public.fail_n8n_activation(
  p_mapping_id uuid, p_claim_id uuid, p_reason text, p_cleaned boolean
)
RETURNS public.n8n_mappings
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  mapping public.n8n_mappings := public.held_n8n_mapping(p_mapping_id, p_claim_id);
  reason text := left(coalesce(p_reason, 'activation failed'), 1000);
BEGIN
  UPDATE public.n8n_mappings
  SET status = 'error', error_message = reason, claim_id = NULL, claim_expires_at = NULL,
      n8n_workflow_ids = CASE WHEN p_cleaned THEN '{}' ELSE n8n_workflow_ids END,
      n8n_credential_ids = CASE WHEN p_cleaned THEN '{}' ELSE n8n_credential_ids END,
      metadata = metadata || jsonb_build_object('failed_at', now(), 'cleanup_pending', NOT p_cleaned)
  WHERE id = p_mapping_id;
  IF p_cleaned THEN
    PERFORM public.release_n8n_instance(p_mapping_id);
  END IF;
  UPDATE public.installation_requests
  SET status = 'needs_attention', customer_visible_status = 'needs_attention',
      status_updated_at = now(), activation_notes_internal = 'Activation failed: ' || reason
  WHERE id = mapping.activation_request_id;
  INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
  VALUES ('provisioning_failed', 'N8N_ACTIVATION_FAILED', left(reason, 4000), 'error',
          jsonb_build_object('mapping_id', p_mapping_id,
                             'activation_request_id', mapping.activation_request_id,
                             'cleanup_pending', NOT p_cleaned));
  SELECT * INTO mapping FROM public.n8n_mappings WHERE id = p_mapping_id;
  RETURN mapping;
END
$$;
REVOKE ALL ON FUNCTION public.fail_n8n_activation(uuid, uuid, text, boolean)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.fail_n8n_activation(uuid, uuid, text, boolean) TO service_role;

-- -- pause, resume, revoke, retrigger ---------------------------------------------------

-- May the actor take `p_action` on the request's mapping now? Returns what the application
-- needs to act on n8n (the mapping, its node).
CREATE FUNCTION public.begin_n8n_lifecycle(p_request_id uuid, p_actor uuid, p_action text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  request public.installation_requests;
  mapping public.n8n_mappings;
BEGIN
  IF p_action NOT IN ('pause', 'resume', 'revoke', 'retrigger') THEN
    RAISE EXCEPTION 'Invalid action. Valid actions: activate, pause, resume, revoke, retrigger'
      USING ERRCODE = '22023';
  END IF;
  request := public.n8n_activation_request(p_request_id, p_actor, false);
  SELECT * INTO mapping FROM public.n8n_mappings
  WHERE activation_request_id = request.id
  ORDER BY status = 'revoked', created_at DESC LIMIT 1;
  IF mapping.status = 'revoked' THEN
    RAISE EXCEPTION 'Activation revoked' USING ERRCODE = 'PT403';
  END IF;
  IF mapping.id IS NULL OR cardinality(mapping.n8n_workflow_ids) = 0
     OR mapping.status NOT IN ('active', 'paused', 'deactivated') THEN
    IF p_action = 'retrigger' THEN
      RAISE EXCEPTION 'Activation has no webhook yet' USING ERRCODE = 'P0001';
    END IF;
    RAISE EXCEPTION 'Activation not provisioned yet (no workflow)' USING ERRCODE = 'P0001';
  END IF;
  IF p_action = 'resume' AND NOT (public.user_is_admin(p_actor)
                                  OR public.billing_mapping_entitled(mapping)) THEN
    RAISE EXCEPTION 'NOT_ENTITLED: no purchase or tier covers this automation'
      USING ERRCODE = 'PT403';
  END IF;
  IF p_action = 'retrigger' AND mapping.webhook_url IS NULL THEN
    RAISE EXCEPTION 'Activation has no webhook yet' USING ERRCODE = 'P0001';
  END IF;
  RETURN jsonb_build_object(
    'mapping_id', mapping.id, 'status', mapping.status,
    'activation_request_id', request.id,
    'workflow_ids', to_jsonb(mapping.n8n_workflow_ids),
    'credential_ids', to_jsonb(mapping.n8n_credential_ids),
    'webhook_url', mapping.webhook_url, 'node', public.n8n_mapping_node(mapping),
    'metadata', mapping.metadata);
END
$$;
REVOKE ALL ON FUNCTION public.begin_n8n_lifecycle(uuid, uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.begin_n8n_lifecycle(uuid, uuid, text) TO service_role;

-- What n8n did for a lifecycle action, recorded: pause/resume set the statuses; revoke is
-- final (capacity released, request completed); retrigger keeps the webhook's answer.
-- `p_details` carries what the application observed (deactivation_verified, the webhook
-- response, ...). A revoked mapping is never changed again.
CREATE FUNCTION public.finish_n8n_lifecycle(
  p_mapping_id uuid, p_actor uuid, p_action text, p_details jsonb
)
RETURNS public.n8n_mappings
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  mapping public.n8n_mappings;
  details jsonb := coalesce(p_details, '{}');
  actor text := coalesce(p_actor::text, coalesce(auth.jwt() ->> 'actor', 'service'));
BEGIN
  SELECT * INTO mapping FROM public.n8n_mappings WHERE id = p_mapping_id FOR UPDATE;
  IF mapping.id IS NULL THEN
    RAISE EXCEPTION 'no such n8n mapping' USING ERRCODE = 'PT404';
  END IF;
  IF mapping.status = 'revoked' THEN
    RAISE EXCEPTION 'Activation revoked' USING ERRCODE = 'PT403';
  END IF;
  IF p_action = 'pause' THEN
    UPDATE public.n8n_mappings
    SET status = 'paused', last_sync_at = now(),
        metadata = metadata || jsonb_build_object(
          'paused_at', now(), 'paused_by', coalesce(metadata ->> 'paused_by', actor))
    WHERE id = p_mapping_id RETURNING * INTO mapping;
    UPDATE public.installation_requests
    SET status = 'paused', customer_visible_status = 'paused', status_updated_at = now()
    WHERE id = mapping.activation_request_id;
  ELSIF p_action = 'resume' THEN
    UPDATE public.n8n_mappings
    SET status = 'active', last_sync_at = now(),
        metadata = (metadata - 'paused_by' - 'paused_at' - 'paused_reason' - 'paused_from')
          || jsonb_build_object('resumed_at', now(), 'resumed_by', actor)
    WHERE id = p_mapping_id RETURNING * INTO mapping;
    UPDATE public.installation_requests
    SET status = 'live', customer_visible_status = 'live', status_updated_at = now()
    WHERE id = mapping.activation_request_id;
  ELSIF p_action = 'revoke' THEN
    UPDATE public.n8n_mappings
    SET status = 'revoked', last_sync_at = now(), claim_id = NULL, claim_expires_at = NULL,
        n8n_workflow_ids = '{}', n8n_credential_ids = '{}',
        metadata = metadata || details || jsonb_build_object(
          'revoked_at', now(), 'revoked_by', actor,
          'deleted_workflow_ids', to_jsonb(mapping.n8n_workflow_ids),
          'deleted_credential_ids', to_jsonb(mapping.n8n_credential_ids))
    WHERE id = p_mapping_id RETURNING * INTO mapping;
    PERFORM public.release_n8n_instance(p_mapping_id);
    UPDATE public.installation_requests
    SET status = 'completed', customer_visible_status = 'completed', status_updated_at = now()
    WHERE id = mapping.activation_request_id;
    SELECT * INTO mapping FROM public.n8n_mappings WHERE id = p_mapping_id;
  ELSIF p_action = 'retrigger' THEN
    UPDATE public.n8n_mappings
    SET webhook_status = CASE WHEN (details ->> 'ok')::boolean THEN 'success' ELSE 'error' END,
        last_webhook_response = jsonb_build_object(
          'status', details -> 'status', 'error', details -> 'error', 'timestamp', now())
    WHERE id = p_mapping_id RETURNING * INTO mapping;
  ELSE
    RAISE EXCEPTION 'unknown lifecycle action' USING ERRCODE = '22023';
  END IF;
  RETURN mapping;
END
$$;
REVOKE ALL ON FUNCTION public.finish_n8n_lifecycle(uuid, uuid, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.finish_n8n_lifecycle(uuid, uuid, text, jsonb) TO service_role;

-- For the worker's pause_workflows / resume_workflows jobs: the mapping as it is now.
CREATE FUNCTION public.n8n_mapping_for_job(p_mapping_id uuid)
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT jsonb_build_object(
    'mapping_id', m.id, 'status', m.status, 'workflow_ids', to_jsonb(m.n8n_workflow_ids),
    'node', public.n8n_mapping_node(m), 'activation_request_id', m.activation_request_id)
  FROM public.n8n_mappings m WHERE m.id = p_mapping_id
$$;
REVOKE ALL ON FUNCTION public.n8n_mapping_for_job(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.n8n_mapping_for_job(uuid) TO service_role;

-- -- run-time credentials ---------------------------------------------------------------

-- The sealed credentials a live activation on this node (NULL: the fallback node) needs,
-- and an audit row naming node, activation and providers — never values.
CREATE FUNCTION public.read_runtime_credentials(p_instance_id uuid, p_request_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  mapping public.n8n_mappings;
  request public.installation_requests;
  agent public.automation_agents;
  required text[];
  sealed jsonb;
  providers text[];
BEGIN
  SELECT * INTO mapping FROM public.n8n_mappings
  WHERE activation_request_id = p_request_id AND status <> 'revoked'
    AND n8n_instance_id IS NOT DISTINCT FROM p_instance_id
    AND (p_instance_id IS NOT NULL OR used_fallback);
  IF mapping.id IS NULL THEN
    RAISE EXCEPTION 'Activation not found' USING ERRCODE = 'PT404';
  END IF;
  IF mapping.status <> 'active' THEN
    RAISE EXCEPTION 'Activation not active' USING ERRCODE = 'PT403', DETAIL = mapping.status;
  END IF;
  SELECT * INTO request FROM public.installation_requests WHERE id = p_request_id;
  SELECT * INTO agent FROM public.automation_agents WHERE id = mapping.automation_id;
  required := public.automation_required_providers(mapping.automation_id);
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'id', c.id, 'provider', c.provider, 'ciphertext', c.encrypted_payload,
           'iv', c.encryption_iv, 'tag', c.encryption_tag, 'key_version', c.key_version)
           ORDER BY c.provider), '[]'::jsonb),
         coalesce(array_agg(c.provider ORDER BY c.provider), '{}')
  INTO sealed, providers
  FROM public.integration_connections c
  WHERE c.user_id = mapping.user_id AND c.status = 'connected'
    AND c.encrypted_payload IS NOT NULL
    AND (cardinality(required) = 0 OR c.provider = ANY (required));
  PERFORM public.audit_event(
    'read:runtime_credentials',
    format('RUNTIME_CREDENTIALS_READ: activation %s on %s', p_request_id,
           coalesce(p_instance_id::text, 'the fallback node')),
    jsonb_build_object('n8n_instance_id', p_instance_id, 'fallback', p_instance_id IS NULL,
                       'activation_request_id', p_request_id, 'mapping_id', mapping.id,
                       'providers', to_jsonb(providers)));
  RETURN jsonb_build_object(
    'activation_id', p_request_id, 'automation_slug', agent.slug, 'tenant_id', mapping.user_id,
    'tenant_email', request.email, 'status', request.status,
    'config', coalesce(mapping.metadata -> 'config', '{}'::jsonb), 'sealed', sealed);
END
$$;
REVOKE ALL ON FUNCTION public.read_runtime_credentials(uuid, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.read_runtime_credentials(uuid, uuid) TO service_role;
