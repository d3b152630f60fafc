-- Client VPS operations: list, live metrics through a short cache, reboot until the VM
-- runs again, scale requests an admin resolves, and a one-time credential view that is
-- really one-time (rotating the credentials re-opens one view).
--
-- The functions granted to `authenticated` check ownership themselves (owner or admin;
-- the original's error words), so they hold through PostgREST `/rpc` as well. What only
-- the function runtime or the worker may do (storing metrics fetched from Hostinger,
-- recording the restart action, storing rotated secrets) is service role only.

-- -- State ----------------------------------------------------------------------------

ALTER TABLE public.provisioning_queue DROP CONSTRAINT provisioning_queue_action_check;
ALTER TABLE public.provisioning_queue ADD CONSTRAINT provisioning_queue_action_check
  CHECK (action IN (
    'provision_vps', 'deploy_agents', 'activate_workflows', 'pause_workflows',
    'resume_workflows', 'watch_reboot'
  ));

ALTER TABLE public.vps_instances
  ADD COLUMN cpus integer CHECK (cpus > 0),
  ADD COLUMN memory_mb integer CHECK (memory_mb > 0),
  ADD COLUMN disk_mb integer CHECK (disk_mb > 0),
  ADD COLUMN rebooting_since timestamptz,
  ADD COLUMN reboot_action_id bigint,
  ADD COLUMN ssh_public_key_id bigint,  -- the key registered at Hostinger by a rotation
  ADD COLUMN credentials_rotated_at timestamptz;
GRANT SELECT (cpus, memory_mb, disk_mb, rebooting_since, reboot_action_id, credentials_rotated_at)
  ON TABLE public.vps_instances TO authenticated;

-- The last metrics fetched per instance, and who is fetching the next (a lease, so that
-- clients polling at once cost Hostinger one call per window).
CREATE TABLE public.vps_metrics_cache (
  instance_id uuid PRIMARY KEY REFERENCES public.vps_instances (id) ON DELETE CASCADE,
  vitality jsonb CHECK (vitality IS NULL OR jsonb_typeof(vitality) = 'object'),
  sampled_at timestamptz,
  refresh_token uuid,
  refresh_until timestamptz,
  upstream_calls bigint NOT NULL DEFAULT 0
);
ALTER TABLE public.vps_metrics_cache ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vps_metrics_cache FORCE ROW LEVEL SECURITY;
CREATE POLICY vps_metrics_cache_select_admin ON public.vps_metrics_cache
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.vps_metrics_cache FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.vps_metrics_cache TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.vps_metrics_cache TO service_role;

CREATE TABLE public.vps_scale_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  instance_id uuid NOT NULL REFERENCES public.vps_instances (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  message text NOT NULL CHECK (char_length(message) BETWEEN 1 AND 1000),
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'declined')),
  resolution_note text CHECK (char_length(resolution_note) <= 1000),
  resolved_by uuid REFERENCES auth.users (id) ON DELETE SET NULL,
  resolved_at timestamptz,
  notification_id uuid REFERENCES public.admin_notifications (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'open') = (resolved_at IS NULL))
);
CREATE INDEX vps_scale_requests_open_idx ON public.vps_scale_requests (created_at)
  WHERE status = 'open';
CREATE INDEX vps_scale_requests_user_idx ON public.vps_scale_requests (user_id);
ALTER TABLE public.vps_scale_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vps_scale_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY vps_scale_requests_select_own ON public.vps_scale_requests
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
REVOKE ALL ON TABLE public.vps_scale_requests FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.vps_scale_requests TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.vps_scale_requests TO service_role;

-- -- Ownership --------------------------------------------------------------------------

-- The instance the caller acts on: its owner, an admin, or the service role.
CREATE FUNCTION public.vps_instance_of_caller(p_instance_id uuid)
RETURNS public.vps_instances
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  instance public.vps_instances;
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND auth.uid() IS NULL THEN
    RAISE EXCEPTION 'UNAUTHORIZED' USING ERRCODE = '42501';
  END IF;
  SELECT * INTO instance FROM public.vps_instances WHERE id = p_instance_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'INSTANCE_NOT_FOUND' USING ERRCODE = 'PT404';
  END IF;
  IF auth.role() IS DISTINCT FROM 'service_role' AND instance.user_id IS DISTINCT FROM auth.uid()
     AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'ACCESS_DENIED: INSTANCE_NOT_OWNED_BY_USER' USING ERRCODE = 'PT403';
  END IF;
  RETURN instance;
END
$$;
REVOKE ALL ON FUNCTION public.vps_instance_of_caller(uuid)
  FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.assert_vm_assigned(p_instance public.vps_instances)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = ''
AS $$
BEGIN
  IF p_instance.virtual_machine_id IS NULL THEN
    RAISE EXCEPTION 'VM_NOT_YET_ASSIGNED'
      USING ERRCODE = 'PT409', HINT = 'the server is still being provisioned';
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.assert_vm_assigned(public.vps_instances)
  FROM PUBLIC, anon, authenticated, service_role;

-- -- Metrics ----------------------------------------------------------------------------

-- What a metrics request gets: `fresh` (the cached vitality is younger than
-- hostinger/metrics_cache_s, default 30 s), `refresh` (this caller holds the lease and
-- fetches; it stores with `refresh_token`), or `refreshing` (someone else is fetching:
-- ask again shortly; `vitality` is the previous sample, if any). `status` is always the
-- instance's current one.
CREATE FUNCTION public.begin_vps_metrics(p_instance_id uuid)
RETURNS TABLE (
  instance_id uuid, virtual_machine_id text, status text, cpus integer, memory_mb integer,
  disk_mb integer, state text, vitality jsonb, sampled_at timestamptz, refresh_token uuid
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  instance public.vps_instances := public.vps_instance_of_caller(p_instance_id);
  ttl interval := make_interval(secs => public.registry_int('hostinger', 'metrics_cache_s', 30));
  cache public.vps_metrics_cache;
  token uuid := gen_random_uuid();
BEGIN
  PERFORM public.assert_vm_assigned(instance);
  INSERT INTO public.vps_metrics_cache AS c (instance_id, refresh_token, refresh_until)
  VALUES (instance.id, token, now() + interval '20 seconds')
  ON CONFLICT ON CONSTRAINT vps_metrics_cache_pkey DO UPDATE
    SET refresh_token = EXCLUDED.refresh_token, refresh_until = EXCLUDED.refresh_until
    WHERE (c.sampled_at IS NULL OR c.sampled_at <= now() - ttl)
      AND (c.refresh_until IS NULL OR c.refresh_until <= now())
  RETURNING * INTO cache;
  IF FOUND THEN
    RETURN QUERY SELECT instance.id, instance.virtual_machine_id, instance.status,
      instance.cpus, instance.memory_mb, instance.disk_mb, 'refresh'::text, cache.vitality,
      cache.sampled_at, token;
    RETURN;
  END IF;
  SELECT * INTO cache FROM public.vps_metrics_cache c WHERE c.instance_id = instance.id;
  RETURN QUERY SELECT instance.id, instance.virtual_machine_id, instance.status,
    instance.cpus, instance.memory_mb, instance.disk_mb,
    CASE WHEN cache.sampled_at > now() - ttl THEN 'fresh' ELSE 'refreshing' END,
    cache.vitality, cache.sampled_at, NULL::uuid;
END
$$;
REVOKE ALL ON FUNCTION public.begin_vps_metrics(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.begin_vps_metrics(uuid) TO authenticated, service_role;

-- Store what the lease holder fetched (and the VM's size, read once). False when the
-- lease was lost meanwhile (it expired and another caller fetched).
CREATE FUNCTION public.store_vps_metrics(
  p_instance_id uuid, p_refresh_token uuid, p_vitality jsonb,
  p_cpus integer DEFAULT NULL, p_memory_mb integer DEFAULT NULL, p_disk_mb integer DEFAULT NULL
)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  UPDATE public.vps_metrics_cache
  SET vitality = p_vitality, sampled_at = now(), refresh_token = NULL, refresh_until = NULL,
      upstream_calls = upstream_calls + 1
  WHERE instance_id = p_instance_id AND refresh_token = p_refresh_token;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF p_cpus IS NOT NULL OR p_memory_mb IS NOT NULL OR p_disk_mb IS NOT NULL THEN
    UPDATE public.vps_instances
    SET cpus = coalesce(p_cpus, cpus), memory_mb = coalesce(p_memory_mb, memory_mb),
        disk_mb = coalesce(p_disk_mb, disk_mb)
    WHERE id = p_instance_id;
  END IF;
  RETURN true;
END
$$;
REVOKE ALL ON FUNCTION public.store_vps_metrics(uuid, uuid, jsonb, integer, integer, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.store_vps_metrics(uuid, uuid, jsonb, integer, integer, integer)
  TO service_role;

-- The fetch failed: give the lease up so the next caller tries at once.
CREATE FUNCTION public.release_vps_metrics(p_instance_id uuid, p_refresh_token uuid)
RETURNS void
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
  UPDATE public.vps_metrics_cache SET refresh_token = NULL, refresh_until = NULL
  WHERE instance_id = p_instance_id AND refresh_token = p_refresh_token
$$;
REVOKE ALL ON FUNCTION public.release_vps_metrics(uuid, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.release_vps_metrics(uuid, uuid) TO service_role;

-- -- Reboot ---------------------------------------------------------------------------

-- Check and mark a reboot before Hostinger is called: the caller's instance, running
-- (`active`), within vps/reboot_limit per vps/reboot_window_s (1 per 300 s) for this
-- user and instance. The instance shows `rebooting` from here on.
CREATE FUNCTION public.begin_vps_reboot(p_instance_id uuid)
RETURNS TABLE (instance_id uuid, virtual_machine_id text)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  instance public.vps_instances := public.vps_instance_of_caller(p_instance_id);
BEGIN
  PERFORM public.assert_vm_assigned(instance);
  IF instance.status <> 'active' THEN
    RAISE EXCEPTION 'INSTANCE_NOT_READY: %', upper(instance.status)
      USING ERRCODE = 'PT409', HINT = 'only a running server can be rebooted';
  END IF;
  PERFORM public.enforce_rate_limit('vps-reboot:' || instance.id,
    public.registry_int('vps', 'reboot_limit', 1),
    public.registry_int('vps', 'reboot_window_s', 300));
  UPDATE public.vps_instances
  SET status = 'rebooting', rebooting_since = now(), reboot_action_id = NULL
  WHERE id = instance.id;
  PERFORM public.audit_event('vps:reboot',
    format('NODE_REBOOT // instance=%s vm=%s', instance.id, instance.virtual_machine_id),
    jsonb_build_object('instance_id', instance.id, 'owner_id', instance.user_id));
  RETURN QUERY SELECT instance.id, instance.virtual_machine_id;
END
$$;
REVOKE ALL ON FUNCTION public.begin_vps_reboot(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.begin_vps_reboot(uuid) TO authenticated;

-- Hostinger accepted the restart: keep its action and let the worker watch it
-- (`watch_reboot` sets the instance back to `active` once the VM runs again).
CREATE FUNCTION public.record_vps_reboot(p_instance_id uuid, p_action_id bigint)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  instance public.vps_instances;
  job_id uuid;
BEGIN
  UPDATE public.vps_instances SET reboot_action_id = p_action_id
  WHERE id = p_instance_id AND status = 'rebooting'
  RETURNING * INTO instance;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'INSTANCE_NOT_REBOOTING' USING ERRCODE = 'PT409';
  END IF;
  INSERT INTO public.provisioning_queue (user_id, action, payload, vps_instance_id, max_attempts)
  VALUES (instance.user_id, 'watch_reboot',
          jsonb_build_object('action_id', p_action_id,
                             'virtual_machine_id', instance.virtual_machine_id,
                             'poll_s', public.registry_int('vps', 'reboot_poll_s', 5),
                             'timeout_s', public.registry_int('vps', 'reboot_timeout_s', 900)),
          instance.id, 5)
  RETURNING id INTO job_id;
  PERFORM pg_catalog.pg_notify('provisioning_queue', job_id::text);
  RETURN job_id;
END
$$;
REVOKE ALL ON FUNCTION public.record_vps_reboot(uuid, bigint)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_vps_reboot(uuid, bigint) TO service_role;

-- Hostinger refused or never answered: the instance is `active` again and the user's
-- reboot is not counted against the limit.
CREATE FUNCTION public.abort_vps_reboot(p_instance_id uuid, p_user_id uuid, p_error text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  UPDATE public.vps_instances
  SET status = 'active', rebooting_since = NULL
  WHERE id = p_instance_id AND status = 'rebooting' AND reboot_action_id IS NULL;
  PERFORM public.refund_rate_limit('user:' || p_user_id, 'vps-reboot:' || p_instance_id,
    public.registry_int('vps', 'reboot_window_s', 300));
  PERFORM public.audit_event('vps:reboot_failed',
    format('NODE_REBOOT_FAILED // instance=%s', p_instance_id),
    jsonb_build_object('instance_id', p_instance_id, 'requested_by', p_user_id,
                       'error', left(p_error, 500)),
    'warn');
END
$$;
REVOKE ALL ON FUNCTION public.abort_vps_reboot(uuid, uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.abort_vps_reboot(uuid, uuid, text) TO service_role;

-- The status a VM's Hostinger state means for a rebooting instance; NULL: still on the way.
CREATE FUNCTION public.vps_status_after_reboot(p_vm_state text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT CASE p_vm_state
    WHEN 'running' THEN 'active'
    WHEN 'stopped' THEN 'stopped'
    WHEN 'error' THEN 'error'
    WHEN 'destroyed' THEN 'terminated'
  END
$$;
REVOKE ALL ON FUNCTION public.vps_status_after_reboot(text)
  FROM PUBLIC, anon, authenticated, service_role;

-- The worker saw the restart action finished: once the VM's state is settled the instance
-- takes the status it means and the job completes; NULL (nothing changed) while the VM is
-- still on its way.
CREATE FUNCTION public.finish_vps_reboot(
  p_job_id uuid, p_lease integer, p_worker_id text, p_vm_state text
)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue := public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  new_status text := public.vps_status_after_reboot(p_vm_state);
BEGIN
  IF new_status IS NULL THEN
    RETURN NULL;
  END IF;
  UPDATE public.vps_instances
  SET status = new_status, rebooting_since = NULL, reboot_action_id = NULL
  WHERE id = job.vps_instance_id AND status = 'rebooting';
  RETURN public.complete_provisioning_job(p_job_id, p_lease, p_worker_id,
    jsonb_build_object('vm_state', p_vm_state, 'status', new_status));
END
$$;
REVOKE ALL ON FUNCTION public.finish_vps_reboot(uuid, integer, text, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.finish_vps_reboot(uuid, integer, text, text) TO service_role;

-- A watch that gave up (the VM never came back within vps/reboot_timeout_s, or the
-- watch failed for good) leaves the instance in `error`, never `rebooting` forever.
CREATE FUNCTION public.reboot_watch_failed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  UPDATE public.vps_instances
  SET status = 'error', rebooting_since = NULL,
      notes = left(coalesce(NEW.last_error, 'the reboot was not confirmed'), 2000)
  WHERE id = NEW.vps_instance_id AND status = 'rebooting';
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.reboot_watch_failed() FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER provisioning_queue_reboot_watch_failed
  AFTER UPDATE OF status ON public.provisioning_queue
  FOR EACH ROW
  WHEN (NEW.action = 'watch_reboot' AND NEW.status IN ('failed', 'cancelled')
        AND OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION public.reboot_watch_failed();

-- -- Scale requests -------------------------------------------------------------------

-- Recorded, limited to vps/scale_request_limit per vps/scale_request_window_s (1 per
-- 600 s) per user, and raised to the admins.
CREATE FUNCTION public.request_vps_scale(p_instance_id uuid, p_message text DEFAULT NULL)
RETURNS public.vps_scale_requests
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  instance public.vps_instances := public.vps_instance_of_caller(p_instance_id);
  message text := coalesce(nullif(btrim(p_message), ''),
    'Client requests a resource upgrade for this node.');
  notification uuid;
  request public.vps_scale_requests;
BEGIN
  IF char_length(message) > 1000 THEN
    RAISE EXCEPTION 'the message is longer than 1000 characters' USING ERRCODE = '22023';
  END IF;
  PERFORM public.enforce_rate_limit('vps-scale-request',
    public.registry_int('vps', 'scale_request_limit', 1),
    public.registry_int('vps', 'scale_request_window_s', 600));
  INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
  VALUES ('scale_request', 'SCALE_REQUEST: Node ' || upper(left(instance.id::text, 8)),
          message, 'warning',
          jsonb_build_object('instance_id', instance.id, 'user_id', instance.user_id,
                             'requested_by', auth.uid(), 'requested_at', now()))
  RETURNING id INTO notification;
  INSERT INTO public.vps_scale_requests (instance_id, user_id, message, notification_id)
  VALUES (instance.id, instance.user_id, message, notification)
  RETURNING * INTO request;
  PERFORM public.audit_event('vps:scale_request',
    format('SCALE_REQUEST // instance=%s', instance.id),
    jsonb_build_object('instance_id', instance.id, 'scale_request_id', request.id), 'warn');
  RETURN request;
END
$$;
REVOKE ALL ON FUNCTION public.request_vps_scale(uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.request_vps_scale(uuid, text) TO authenticated;

-- An admin resolves (or declines) an open request; audited.
CREATE FUNCTION public.resolve_vps_scale_request(
  p_request_id uuid, p_status text, p_note text DEFAULT NULL
)
RETURNS public.vps_scale_requests
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  request public.vps_scale_requests;
BEGIN
  IF NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins resolve scale requests' USING ERRCODE = '42501';
  END IF;
  IF p_status IS NULL OR p_status NOT IN ('resolved', 'declined') THEN
    RAISE EXCEPTION 'unknown resolution' USING ERRCODE = '22023', HINT = 'resolved or declined';
  END IF;
  IF char_length(p_note) > 1000 THEN
    RAISE EXCEPTION 'the note is longer than 1000 characters' USING ERRCODE = '22023';
  END IF;
  UPDATE public.vps_scale_requests
  SET status = p_status, resolution_note = p_note, resolved_by = auth.uid(), resolved_at = now()
  WHERE id = p_request_id AND status = 'open'
  RETURNING * INTO request;
  IF NOT FOUND THEN
    IF EXISTS (SELECT 1 FROM public.vps_scale_requests WHERE id = p_request_id) THEN
      RAISE EXCEPTION 'SCALE_REQUEST_ALREADY_CLOSED' USING ERRCODE = 'PT409';
    END IF;
    RAISE EXCEPTION 'SCALE_REQUEST_NOT_FOUND' USING ERRCODE = 'PT404';
  END IF;
  UPDATE public.admin_notifications SET read = true WHERE id = request.notification_id;
  PERFORM public.audit_event('vps:scale_resolved',
    format('SCALE_REQUEST_%s // request=%s', upper(p_status), request.id),
    jsonb_build_object('scale_request_id', request.id, 'instance_id', request.instance_id,
                       'status', p_status));
  RETURN request;
END
$$;
REVOKE ALL ON FUNCTION public.resolve_vps_scale_request(uuid, text, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.resolve_vps_scale_request(uuid, text, text) TO authenticated;

-- -- Credentials ----------------------------------------------------------------------

-- A view of an instance's credentials. The owner's first view (or first after a
-- rotation) returns the sealed values and spends the view; later views return metadata
-- only. An admin reading a client's node needs a human signature and always gets the
-- values (support), without spending the owner's view. Every view is audited — who,
-- which instance, whether values were handed out; never the values.
-- Through PostgREST `/rpc` this returns only ciphertext (the key is not in the database)
-- and still spends the view: rotating re-opens it.
CREATE FUNCTION public.view_vps_credentials(p_instance_id uuid)
RETURNS TABLE (
  instance_id uuid, ip_address text, hostname text, n8n_instance_url text,
  first_view boolean, admin_read boolean, viewed_at timestamptz,
  ssh_ciphertext text, ssh_iv text, ssh_tag text, ssh_key_version integer,
  n8n_ciphertext text, n8n_iv text, n8n_tag text, n8n_key_version integer
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  instance public.vps_instances := public.vps_instance_of_caller(p_instance_id);
  owner boolean := instance.user_id = auth.uid();
  reveal boolean;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'credentials are viewed by a person' USING ERRCODE = '42501';
  END IF;
  IF NOT owner THEN
    PERFORM public.assert_human_signature('ths');
  END IF;
  reveal := NOT owner OR instance.credentials_viewed_at IS NULL;
  IF owner AND reveal THEN
    UPDATE public.vps_instances SET credentials_viewed_at = now() WHERE id = instance.id
    RETURNING credentials_viewed_at INTO instance.credentials_viewed_at;
  END IF;
  PERFORM public.audit_event('vps:credentials_view',
    format('CREDENTIAL_READ // instance=%s first_view=%s', instance.id, owner AND reveal),
    jsonb_build_object('instance_id', instance.id, 'owner_id', instance.user_id,
                       'revealed', reveal, 'admin_read', NOT owner),
    CASE WHEN owner THEN 'info' ELSE 'warn' END);
  RETURN QUERY SELECT instance.id, instance.ip_address, instance.hostname,
    instance.n8n_instance_url, owner AND reveal, NOT owner, instance.credentials_viewed_at,
    CASE WHEN reveal THEN instance.encrypted_ssh_private_key END,
    CASE WHEN reveal THEN instance.ssh_encryption_iv END,
    CASE WHEN reveal THEN instance.ssh_encryption_tag END,
    instance.ssh_key_version,
    CASE WHEN reveal THEN instance.encrypted_n8n_credentials END,
    CASE WHEN reveal THEN instance.n8n_encryption_iv END,
    CASE WHEN reveal THEN instance.n8n_encryption_tag END,
    instance.n8n_key_version;
END
$$;
REVOKE ALL ON FUNCTION public.view_vps_credentials(uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.view_vps_credentials(uuid) TO authenticated;

-- The owner starts a rotation: a running server with a VM, within
-- vps/credential_rotation_limit per vps/credential_rotation_window_s (3 per hour).
CREATE FUNCTION public.begin_vps_credential_rotation(p_instance_id uuid)
RETURNS TABLE (instance_id uuid, virtual_machine_id text, hostname text,
               previous_public_key_id bigint)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  instance public.vps_instances := public.vps_instance_of_caller(p_instance_id);
BEGIN
  IF instance.user_id IS DISTINCT FROM auth.uid() THEN
    RAISE EXCEPTION 'ACCESS_DENIED: ONLY_THE_OWNER_ROTATES_CREDENTIALS' USING ERRCODE = 'PT403';
  END IF;
  PERFORM public.assert_vm_assigned(instance);
  IF instance.status <> 'active' THEN
    RAISE EXCEPTION 'INSTANCE_NOT_READY: %', upper(instance.status)
      USING ERRCODE = 'PT409', HINT = 'credentials are rotated on a running server';
  END IF;
  PERFORM public.enforce_rate_limit('vps-credential-rotation:' || instance.id,
    public.registry_int('vps', 'credential_rotation_limit', 3),
    public.registry_int('vps', 'credential_rotation_window_s', 3600));
  RETURN QUERY SELECT instance.id, instance.virtual_machine_id, instance.hostname,
    instance.ssh_public_key_id;
END
$$;
REVOKE ALL ON FUNCTION public.begin_vps_credential_rotation(uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.begin_vps_credential_rotation(uuid) TO authenticated;

-- The new secrets, pushed to Hostinger, are stored sealed (bound to the row) and one view
-- re-opens. Service role: only the function runtime, after Hostinger accepted them.
CREATE FUNCTION public.store_rotated_vps_credentials(
  p_instance_id uuid, p_user_id uuid, p_ciphertext text, p_iv text, p_tag text,
  p_key_version integer, p_public_key_id bigint
)
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  rotated timestamptz;
BEGIN
  IF p_ciphertext IS NULL OR p_ciphertext NOT LIKE 'v2:%' OR p_iv IS NULL OR p_tag IS NULL
     OR p_key_version IS NULL OR p_key_version < 1 THEN
    RAISE EXCEPTION 'rotated credentials are sealed with the bound scheme' USING ERRCODE = '22023';
  END IF;
  UPDATE public.vps_instances
  SET encrypted_ssh_private_key = p_ciphertext, ssh_encryption_iv = p_iv,
      ssh_encryption_tag = p_tag, ssh_key_version = p_key_version,
      ssh_public_key_id = p_public_key_id, credentials_viewed_at = NULL,
      credentials_rotated_at = now()
  WHERE id = p_instance_id AND user_id = p_user_id
  RETURNING credentials_rotated_at INTO rotated;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'INSTANCE_NOT_FOUND' USING ERRCODE = 'PT404';
  END IF;
  PERFORM public.audit_event('vps:credentials_rotated',
    format('CREDENTIALS_ROTATED // instance=%s', p_instance_id),
    jsonb_build_object('instance_id', p_instance_id, 'owner_id', p_user_id,
                       'public_key_id', p_public_key_id));
  RETURN rotated;
END
$$;
REVOKE ALL ON FUNCTION public.store_rotated_vps_credentials(uuid, uuid, text, text, text, integer, bigint)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.store_rotated_vps_credentials(uuid, uuid, text, text, text, integer, bigint)
  TO service_role;
