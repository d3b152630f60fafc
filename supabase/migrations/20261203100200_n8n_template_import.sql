-- Importing n8n workflow templates (immutable) and the catalog entries that use them.
--
-- A template's `file_hash` is the SHA-256 of its canonical JSON: objects with their keys in
-- code-point order, arrays in order, no insignificant whitespace, strings escaped as JSON
-- does, non-ASCII as UTF-8 — computed here, from the whole nested document (the original
-- hashed only top-level keys, so different workflows collided). Providers are detected
-- from node types and the credential types nodes use, named as Connect-Once names them.

CREATE FUNCTION public.canonical_json(p_value jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
STRICT
SET search_path = ''
AS $$
  SELECT CASE jsonb_typeof(p_value)
    WHEN 'object' THEN '{' || coalesce((
      SELECT string_agg(to_json(e.key)::text || ':' || public.canonical_json(e.value), ','
                        ORDER BY e.key COLLATE "C")
      FROM jsonb_each(p_value) AS e), '') || '}'
    WHEN 'array' THEN '[' || coalesce((
      SELECT string_agg(public.canonical_json(a.value), ',' ORDER BY a.n)
      FROM jsonb_array_elements(p_value) WITH ORDINALITY AS a(value, n)), '') || ']'
    ELSE p_value::text
  END
$$;
REVOKE ALL ON FUNCTION public.canonical_json(jsonb) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.n8n_workflow_hash(p_workflow jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
STRICT
SET search_path = ''
AS $$
  SELECT encode(sha256(convert_to(public.canonical_json(p_workflow), 'UTF8')), 'hex')
$$;
REVOKE ALL ON FUNCTION public.n8n_workflow_hash(jsonb) FROM PUBLIC, anon, authenticated, service_role;

-- The provider a node type or credential type belongs to (NULL: generic, none).
CREATE FUNCTION public.n8n_provider_of(p_type text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT CASE
    WHEN t ~ '(^|\.)(openai|lmchatopenai|embeddingsopenai|openaiapi)' THEN 'openai'
    WHEN t ~ '(^|\.)telegram' THEN 'telegram'
    WHEN t ~ '(^|\.)airtable' THEN 'airtable'
    WHEN t ~ '(^|\.)(gmail|googlesheets|googlecalendar|googledrive|googledocs|google)' THEN 'google'
    WHEN t ~ '(^|\.)hubspot' THEN 'hubspot'
    WHEN t ~ '(^|\.)slack' THEN 'slack'
    WHEN t ~ '(^|\.)notion' THEN 'notion'
    WHEN t ~ '(^|\.)microsoft' THEN 'microsoft'
    WHEN t ~ '(^|\.)jira' THEN 'jira'
    WHEN t ~ '(^|\.)stripe' THEN 'stripe'
    WHEN t ~ '(^|\.)twilio' THEN 'twilio'
  END
  FROM (SELECT lower(p_type) AS t) AS x
$$;
REVOKE ALL ON FUNCTION public.n8n_provider_of(text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.n8n_template_providers(p_workflow jsonb)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT coalesce(array_agg(DISTINCT provider ORDER BY provider), '{}')
  FROM (
    SELECT public.n8n_provider_of(n ->> 'type') AS provider
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_workflow -> 'nodes') = 'array'
                                   THEN p_workflow -> 'nodes' ELSE '[]' END) AS n
    UNION ALL
    SELECT public.n8n_provider_of(c.key)
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_workflow -> 'nodes') = 'array'
                                   THEN p_workflow -> 'nodes' ELSE '[]' END) AS n
    CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(n -> 'credentials') = 'object'
                                       THEN n -> 'credentials' ELSE '{}' END) AS c
  ) AS found
  WHERE provider IS NOT NULL
$$;
REVOKE ALL ON FUNCTION public.n8n_template_providers(jsonb)
  FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.n8n_slug(p_text text, p_max integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT coalesce(nullif(trim(BOTH '-' FROM left(
           trim(BOTH '-' FROM regexp_replace(lower(coalesce(p_text, '')), '[^a-z0-9]+', '-', 'g')),
           p_max)), ''), 'workflow')
$$;
REVOKE ALL ON FUNCTION public.n8n_slug(text, integer) FROM PUBLIC, anon, authenticated, service_role;

-- Import one workflow as an immutable template (admins, the service role). The same
-- canonical document again is `skipped`; a taken slug gets -1, -2, ...
CREATE FUNCTION public.import_n8n_template(
  p_workflow jsonb, p_filename text, p_name text, p_slug text, p_description text,
  p_automation_agent_id uuid DEFAULT NULL
)
RETURNS TABLE (
  id uuid, slug text, name text, file_hash text, detected_providers text[], trigger_type text,
  outcome text, reason text
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  hash text;
  existing public.n8n_workflow_templates;
  stored public.n8n_workflow_templates;
  base text;
  candidate text;
  suffix integer := 0;
  trigger_node text;
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins import templates' USING ERRCODE = '42501';
  END IF;
  IF jsonb_typeof(p_workflow) IS DISTINCT FROM 'object'
     OR jsonb_typeof(p_workflow -> 'nodes') IS DISTINCT FROM 'array'
     OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_workflow -> 'nodes') AS n
                    WHERE jsonb_typeof(n -> 'type') = 'string' AND n ->> 'type' <> '') THEN
    RAISE EXCEPTION 'Invalid workflow: nodes must be an array with at least one typed node'
      USING ERRCODE = '22023';
  END IF;
  IF p_workflow ? 'connections' AND jsonb_typeof(p_workflow -> 'connections') <> 'object' THEN
    RAISE EXCEPTION 'Invalid workflow: connections must be an object' USING ERRCODE = '22023';
  END IF;
  hash := public.n8n_workflow_hash(p_workflow);
  SELECT * INTO existing FROM public.n8n_workflow_templates t WHERE t.file_hash = hash;
  IF existing.id IS NOT NULL THEN
    RETURN QUERY SELECT existing.id, existing.slug, existing.name, existing.file_hash,
      existing.detected_providers, existing.trigger_type, 'skipped'::text,
      format('duplicate of template %s', existing.slug);
    RETURN;
  END IF;
  SELECT n ->> 'type' INTO trigger_node
  FROM jsonb_array_elements(p_workflow -> 'nodes') WITH ORDINALITY AS x(n, i)
  WHERE lower(n ->> 'type') LIKE '%trigger%' OR n ->> 'type' = 'n8n-nodes-base.webhook'
  ORDER BY i LIMIT 1;
  base := public.n8n_slug(coalesce(nullif(p_slug, ''), nullif(p_name, ''),
                                   p_workflow ->> 'name', p_filename), 60);
  LOOP
    candidate := CASE WHEN suffix = 0 THEN base ELSE base || '-' || suffix END;
    INSERT INTO public.n8n_workflow_templates AS t (
      slug, name, description, workflow_json, detected_providers, node_count, trigger_type,
      file_hash, original_filename, automation_agent_id, imported_by
    ) VALUES (
      candidate,
      left(coalesce(nullif(p_name, ''), nullif(p_workflow ->> 'name', ''), p_filename, candidate), 200),
      p_description, p_workflow, public.n8n_template_providers(p_workflow),
      jsonb_array_length(p_workflow -> 'nodes'), trigger_node, hash, left(p_filename, 255),
      p_automation_agent_id, auth.uid()
    )
    ON CONFLICT DO NOTHING
    RETURNING * INTO stored;
    EXIT WHEN stored.id IS NOT NULL;
    -- lost a race on the same document: that import is this one
    SELECT * INTO existing FROM public.n8n_workflow_templates t WHERE t.file_hash = hash;
    IF existing.id IS NOT NULL THEN
      RETURN QUERY SELECT existing.id, existing.slug, existing.name, existing.file_hash,
        existing.detected_providers, existing.trigger_type, 'skipped'::text,
        format('duplicate of template %s', existing.slug);
      RETURN;
    END IF;
    suffix := suffix + 1;
    IF suffix > 1000 THEN
      RAISE EXCEPTION 'no free slug for %', base USING ERRCODE = '23505';
    END IF;
  END LOOP;
  RETURN QUERY SELECT stored.id, stored.slug, stored.name, stored.file_hash,
    stored.detected_providers, stored.trigger_type, 'imported'::text, NULL::text;
END
$$;
REVOKE ALL ON FUNCTION public.import_n8n_template(jsonb, text, text, text, text, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.import_n8n_template(jsonb, text, text, text, text, uuid)
  TO authenticated, service_role;

-- Import a workflow and create or update the catalog entry that runs it (admins, the
-- service role): `created` or `updated`, the agent linked to the (new or existing)
-- template. A published entry stays published; its template link is replaced, the old
-- template itself stays (immutable).
CREATE FUNCTION public.import_automation_workflow(
  p_workflow jsonb, p_filename text, p_slug text
)
RETURNS TABLE (
  slug text, status text, message text, automation_agent_id uuid, template_id uuid,
  template_outcome text
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  agent_slug text;
  agent public.automation_agents;
  created boolean;
  providers text[];
  template record;
  workflow_name text;
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins import workflows' USING ERRCODE = '42501';
  END IF;
  workflow_name := left(coalesce(nullif(p_workflow ->> 'name', ''), p_filename, 'Workflow'), 200);
  agent_slug := public.n8n_slug(coalesce(nullif(p_slug, ''), workflow_name), 50);
  providers := public.n8n_template_providers(p_workflow);
  SELECT * INTO agent FROM public.automation_agents a WHERE a.slug = agent_slug FOR UPDATE;
  created := agent.id IS NULL;
  IF created THEN
    INSERT INTO public.automation_agents AS a (
      slug, name, description, short_outcome, systems, required_integrations, status
    ) VALUES (
      agent_slug, workflow_name, 'Imported workflow: ' || workflow_name,
      CASE WHEN cardinality(providers) > 0
           THEN 'Automates ' || array_to_string(providers, ', ') || ' integration'
           ELSE 'Automates a workflow' END,
      providers,
      coalesce((SELECT jsonb_agg(jsonb_build_object('provider', p) ORDER BY p)
                FROM unnest(providers) AS p), '[]'::jsonb),
      'draft'
    )
    ON CONFLICT (slug) DO NOTHING
    RETURNING * INTO agent;
    IF agent.id IS NULL THEN  -- created meanwhile by a concurrent import
      SELECT * INTO agent FROM public.automation_agents a WHERE a.slug = agent_slug FOR UPDATE;
      created := false;
    END IF;
  END IF;
  SELECT * INTO template FROM public.import_n8n_template(
    p_workflow, p_filename, workflow_name, agent_slug, NULL, agent.id);
  UPDATE public.automation_agents a
  SET n8n_template_ids = ARRAY[template.id::text],
      systems = CASE WHEN created THEN a.systems ELSE providers END,
      required_integrations = coalesce((SELECT jsonb_agg(jsonb_build_object('provider', p) ORDER BY p)
                                        FROM unnest(providers) AS p), '[]'::jsonb),
      name = CASE WHEN a.status = 'published' THEN a.name ELSE workflow_name END
  WHERE a.id = agent.id;
  RETURN QUERY SELECT agent_slug, CASE WHEN created THEN 'created' ELSE 'updated' END,
    CASE WHEN template.outcome = 'skipped'
         THEN format('linked to the existing template %s', template.slug)
         ELSE format('imported as template %s', template.slug) END,
    agent.id, template.id, template.outcome;
END
$$;
REVOKE ALL ON FUNCTION public.import_automation_workflow(jsonb, text, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.import_automation_workflow(jsonb, text, text)
  TO authenticated, service_role;
