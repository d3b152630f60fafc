-- The n8n mesh: least-load reservation of capacity across n8n nodes, per-node secrets,
-- and node health.
--
-- `reserve_n8n_instance()` picks, among `active` nodes with room, the one with the lowest
-- current_load / max_capacity and counts the reservation in the same statement; one
-- reservation runs at a time (a transaction-scoped advisory lock), so the load stays
-- proportional to capacity under any concurrency, and the CHECK constraint of 20261203010400
-- is the backstop (never above capacity, never negative). The node is recorded on the
-- mapping, with whether a reservation is held, so that `release_n8n_instance()` gives it
-- back exactly once (on failure, revoke, and when the mapping is deleted). No node with
-- room: the caller falls back to N8N_BASE_URL and the mapping records that it did.
--
-- A node's API key and runtime secret are named, never stored: `env:NAME` or `vault:NAME`.

ALTER TABLE public.n8n_instances
  ADD COLUMN runtime_secret text
    CHECK (runtime_secret ~ '^(env|vault):[A-Za-z_][A-Za-z0-9_]*$'),
  -- the health check moved it offline (and may bring it back); operators' statuses stay
  ADD COLUMN auto_offline boolean NOT NULL DEFAULT false,
  ADD COLUMN last_ping_error text CHECK (char_length(last_ping_error) <= 500);
GRANT INSERT (runtime_secret), UPDATE (runtime_secret) ON TABLE public.n8n_instances TO authenticated;

-- Bookkeeping (load, pings) is not an admin change: audit only what operators decide.
DROP TRIGGER n8n_instances_audit ON public.n8n_instances;
CREATE TRIGGER n8n_instances_audit
  AFTER INSERT OR DELETE
     OR UPDATE OF instance_url, region, label, max_capacity, status, api_key_secret, runtime_secret
  ON public.n8n_instances
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('instance_url');

ALTER TABLE public.n8n_mappings
  ADD COLUMN n8n_instance_id uuid REFERENCES public.n8n_instances (id) ON DELETE RESTRICT,
  ADD COLUMN n8n_base_url text CHECK (n8n_base_url ~ '^https?://[^/\s]+$'),
  ADD COLUMN used_fallback boolean NOT NULL DEFAULT false,
  ADD COLUMN capacity_reserved boolean NOT NULL DEFAULT false,
  -- the activation attempt holding the mapping, and until when (a crashed attempt's
  -- claim expires and the next one takes over, cleaning up what it left)
  ADD COLUMN claim_id uuid,
  ADD COLUMN claim_expires_at timestamptz,
  ADD CONSTRAINT n8n_mappings_reservation_has_node
    CHECK (NOT capacity_reserved OR n8n_instance_id IS NOT NULL);
CREATE INDEX n8n_mappings_instance_idx ON public.n8n_mappings (n8n_instance_id)
  WHERE n8n_instance_id IS NOT NULL;

INSERT INTO public.system_registry (namespace, key, value, description) VALUES
  ('n8n', 'ping_interval_s', '30', 'How often the worker asks every n8n node whether it is ready'),
  ('n8n', 'offline_after_s', '90', 'A node silent this long is moved offline (and back when it answers)'),
  ('n8n', 'activation_lease_s', '300', 'How long one activation attempt holds a mapping');

-- Pick the least-loaded active node with room and count one reservation on it, in one
-- statement; with `p_mapping_id`, record it on the mapping (a mapping already holding a
-- reservation gets the same node back). No row with an instance id: no node has room,
-- the caller falls back to N8N_BASE_URL (recorded on the mapping).
CREATE FUNCTION public.reserve_n8n_instance(p_mapping_id uuid DEFAULT NULL)
RETURNS TABLE (
  instance_id uuid, instance_url text, api_key_secret text, runtime_secret text,
  used_fallback boolean
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  mapping public.n8n_mappings;
  picked public.n8n_instances;
BEGIN
  IF p_mapping_id IS NOT NULL THEN
    SELECT * INTO mapping FROM public.n8n_mappings WHERE id = p_mapping_id FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no such n8n mapping' USING ERRCODE = 'PT404';
    END IF;
    IF mapping.capacity_reserved THEN
      RETURN QUERY SELECT i.id, i.instance_url, i.api_key_secret, i.runtime_secret, false
      FROM public.n8n_instances i WHERE i.id = mapping.n8n_instance_id;
      RETURN;
    END IF;
  END IF;
  -- One reservation at a time: each sees the loads the previous one left, so the order
  -- is exact (proportional to capacity) however many callers race.
  PERFORM pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('aerelion.n8n_reservation', 0));
  UPDATE public.n8n_instances AS i
  SET current_load = i.current_load + 1
  FROM (
    SELECT c.id FROM public.n8n_instances c
    WHERE c.status = 'active' AND c.current_load < c.max_capacity
    ORDER BY c.current_load::numeric / c.max_capacity, c.max_capacity DESC, c.id
    LIMIT 1
  ) AS pick
  WHERE i.id = pick.id
  RETURNING i.* INTO picked;
  IF p_mapping_id IS NOT NULL THEN
    UPDATE public.n8n_mappings
    SET n8n_instance_id = picked.id,
        n8n_base_url = CASE WHEN picked.id IS NULL THEN NULL
                            ELSE substring(picked.instance_url FROM '^https?://[^/\s]+') END,
        used_fallback = picked.id IS NULL,
        capacity_reserved = picked.id IS NOT NULL
    WHERE id = p_mapping_id;
  END IF;
  RETURN QUERY SELECT picked.id, picked.instance_url, picked.api_key_secret,
                      picked.runtime_secret, picked.id IS NULL;
END
$$;
REVOKE ALL ON FUNCTION public.reserve_n8n_instance(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.reserve_n8n_instance(uuid) TO service_role;

-- Give back a mapping's reservation, once: true when one was held.
CREATE FUNCTION public.release_n8n_instance(p_mapping_id uuid)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  node uuid;
BEGIN
  UPDATE public.n8n_mappings SET capacity_reserved = false
  WHERE id = p_mapping_id AND capacity_reserved
  RETURNING n8n_instance_id INTO node;
  IF node IS NULL THEN
    RETURN false;
  END IF;
  UPDATE public.n8n_instances SET current_load = current_load - 1
  WHERE id = node AND current_load > 0;
  RETURN true;
END
$$;
REVOKE ALL ON FUNCTION public.release_n8n_instance(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.release_n8n_instance(uuid) TO service_role;

-- A mapping deleted while holding a reservation gives it back.
CREATE FUNCTION public.release_n8n_capacity_of_deleted_mapping()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF OLD.capacity_reserved THEN
    UPDATE public.n8n_instances SET current_load = current_load - 1
    WHERE id = OLD.n8n_instance_id AND current_load > 0;
  END IF;
  RETURN OLD;
END
$$;
REVOKE ALL ON FUNCTION public.release_n8n_capacity_of_deleted_mapping()
  FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER n8n_mappings_release_capacity
  BEFORE DELETE ON public.n8n_mappings
  FOR EACH ROW EXECUTE FUNCTION public.release_n8n_capacity_of_deleted_mapping();

-- -- The node pool (operators, through `aerelion nodes`; audited by the table's trigger) --

CREATE FUNCTION public.n8n_instance_ref(p_ref text)
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
    RAISE EXCEPTION 'no n8n node %', left(p_ref, 200) USING ERRCODE = 'PT404';
  END IF;
  RETURN node;
END
$$;
REVOKE ALL ON FUNCTION public.n8n_instance_ref(text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.add_n8n_instance(
  p_url text, p_label text, p_region text, p_max_capacity integer,
  p_api_key_secret text, p_runtime_secret text
)
RETURNS public.n8n_instances
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  node public.n8n_instances;
BEGIN
  IF p_url IS NULL OR p_url !~ '^https?://[^/\s]+/?$' THEN
    RAISE EXCEPTION 'a node is its base URL (http(s)://host[:port])' USING ERRCODE = '22023';
  END IF;
  INSERT INTO public.n8n_instances
    (instance_url, label, region, max_capacity, api_key_secret, runtime_secret)
  VALUES (rtrim(p_url, '/'), p_label, coalesce(p_region, 'us-east-1'),
          coalesce(p_max_capacity, 100), p_api_key_secret, p_runtime_secret)
  RETURNING * INTO node;
  RETURN node;
END
$$;
REVOKE ALL ON FUNCTION public.add_n8n_instance(text, text, text, integer, text, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.add_n8n_instance(text, text, text, integer, text, text)
  TO service_role;

-- Every node with its live workflows (what `aerelion nodes list` shows).
CREATE FUNCTION public.list_n8n_instances()
RETURNS TABLE (
  id uuid, instance_url text, label text, region text, status text, current_load integer,
  max_capacity integer, live_mappings bigint, api_key_secret text, runtime_secret text,
  last_ping_at timestamptz, last_ping_error text, auto_offline boolean
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT i.id, i.instance_url, i.label, i.region, i.status, i.current_load, i.max_capacity,
         (SELECT count(*) FROM public.n8n_mappings m
          WHERE m.n8n_instance_id = i.id AND m.status NOT IN ('revoked', 'error')),
         i.api_key_secret, i.runtime_secret, i.last_ping_at, i.last_ping_error, i.auto_offline
  FROM public.n8n_instances i
  ORDER BY i.created_at, i.id
$$;
REVOKE ALL ON FUNCTION public.list_n8n_instances() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.list_n8n_instances() TO service_role;

-- Drain (`maintenance`: nothing new, its workflows keep running) or set another status.
CREATE FUNCTION public.set_n8n_instance_status(p_ref text, p_status text)
RETURNS public.n8n_instances
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  node public.n8n_instances := public.n8n_instance_ref(p_ref);
BEGIN
  UPDATE public.n8n_instances SET status = p_status, auto_offline = false
  WHERE id = node.id RETURNING * INTO node;
  RETURN node;
END
$$;
REVOKE ALL ON FUNCTION public.set_n8n_instance_status(text, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.set_n8n_instance_status(text, text) TO service_role;

-- Remove a node that runs nothing any more (finished mappings keep its URL).
CREATE FUNCTION public.remove_n8n_instance(p_ref text)
RETURNS public.n8n_instances
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  node public.n8n_instances := public.n8n_instance_ref(p_ref);
  live bigint;
BEGIN
  SELECT count(*) INTO live FROM public.n8n_mappings
  WHERE n8n_instance_id = node.id AND (status NOT IN ('revoked', 'error') OR capacity_reserved
                                        OR cardinality(n8n_workflow_ids) > 0);
  IF live > 0 THEN
    RAISE EXCEPTION 'node % still runs % activation(s): drain it and revoke or move them first',
      node.instance_url, live USING ERRCODE = 'PT409';
  END IF;
  UPDATE public.n8n_mappings SET n8n_instance_id = NULL WHERE n8n_instance_id = node.id;
  DELETE FROM public.n8n_instances WHERE id = node.id;
  RETURN node;
END
$$;
REVOKE ALL ON FUNCTION public.remove_n8n_instance(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.remove_n8n_instance(text) TO service_role;

-- Nodes the health check asks (all but those in maintenance), with the settings it uses.
CREATE FUNCTION public.n8n_instances_to_ping()
RETURNS TABLE (id uuid, instance_url text, status text, ping_interval_s integer)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT i.id, i.instance_url, i.status, public.registry_int('n8n', 'ping_interval_s', 30)
  FROM public.n8n_instances i WHERE i.status <> 'maintenance' ORDER BY i.id
$$;
REVOKE ALL ON FUNCTION public.n8n_instances_to_ping() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.n8n_instances_to_ping() TO service_role;

-- The answer of one readiness check: a node silent for n8n/offline_after_s goes offline
-- (and the operators are told); one the check moved offline comes back when it answers.
CREATE FUNCTION public.record_n8n_ping(p_instance_id uuid, p_ok boolean, p_error text)
RETURNS public.n8n_instances
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  node public.n8n_instances;
BEGIN
  UPDATE public.n8n_instances
  SET last_ping_at = CASE WHEN p_ok THEN now() ELSE last_ping_at END,
      last_ping_error = CASE WHEN p_ok THEN NULL ELSE left(coalesce(p_error, 'no answer'), 500) END
  WHERE id = p_instance_id
  RETURNING * INTO node;
  IF node.id IS NULL THEN
    RETURN NULL;
  END IF;
  IF p_ok AND node.status = 'offline' AND node.auto_offline THEN
    UPDATE public.n8n_instances SET status = 'active', auto_offline = false
    WHERE id = node.id RETURNING * INTO node;
  ELSIF NOT p_ok AND node.status IN ('active', 'degraded')
        AND coalesce(node.last_ping_at, node.created_at)
            < now() - make_interval(secs => public.registry_int('n8n', 'offline_after_s', 90)) THEN
    UPDATE public.n8n_instances SET status = 'offline', auto_offline = true
    WHERE id = node.id RETURNING * INTO node;
    INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
    VALUES ('generic', format('N8N_NODE_OFFLINE: %s', left(node.instance_url, 150)),
            format('n8n node %s has not answered its readiness check since %s: it receives no '
                   'new activations until it answers again.', node.instance_url,
                   coalesce(node.last_ping_at::text, 'it was added')),
            'error',
            jsonb_build_object('kind', 'n8n_node_offline', 'n8n_instance_id', node.id));
  END IF;
  RETURN node;
END
$$;
REVOKE ALL ON FUNCTION public.record_n8n_ping(uuid, boolean, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_n8n_ping(uuid, boolean, text) TO service_role;

-- The plaintext of a `vault:NAME` secret a node names (Supabase Vault), for the service
-- role; NULL where there is no Vault or no such secret. Only names a node refers to.
CREATE FUNCTION public.n8n_vault_secret(p_reference text)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  found text;
BEGIN
  IF p_reference IS NULL OR p_reference NOT LIKE 'vault:%' OR NOT EXISTS (
    SELECT 1 FROM public.n8n_instances
    WHERE api_key_secret = p_reference OR runtime_secret = p_reference
  ) OR pg_catalog.to_regclass('vault.decrypted_secrets') IS NULL THEN
    RETURN NULL;
  END IF;
  EXECUTE 'SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1'
    INTO found USING substr(p_reference, 7);
  RETURN found;
END
$$;
REVOKE ALL ON FUNCTION public.n8n_vault_secret(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.n8n_vault_secret(text) TO service_role;

-- Nodes and the names of their runtime secrets (runtime-credentials finds the caller's).
CREATE FUNCTION public.n8n_runtime_secrets()
RETURNS TABLE (id uuid, runtime_secret text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT i.id, i.runtime_secret FROM public.n8n_instances i
  WHERE i.runtime_secret IS NOT NULL ORDER BY i.id
$$;
REVOKE ALL ON FUNCTION public.n8n_runtime_secrets() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.n8n_runtime_secrets() TO service_role;
