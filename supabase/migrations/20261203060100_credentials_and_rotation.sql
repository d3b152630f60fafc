-- Credentials clients hand us, and the rotation of the key that seals them.
--
-- Encryption happens in the application (aerelion.vault: AES-256-GCM bound to table,
-- column and row); these functions decide who may store, read, revoke and rotate, keep
-- the bookkeeping, and leave an audit row for every read of plaintext (who, what, when —
-- never values). Reading decrypted credentials and rotating keys need a human signature.

-- Every encrypted column set, for rotation. A later table with a secret adds a row.
CREATE TABLE public.encrypted_columns (
  name text PRIMARY KEY CHECK (name ~ '^[a-z0-9_]+$'),
  table_name text NOT NULL,
  id_column text NOT NULL,
  ciphertext_column text NOT NULL,
  iv_column text NOT NULL,
  tag_column text NOT NULL,
  version_column text NOT NULL
);
INSERT INTO public.encrypted_columns VALUES
  ('integration_connections', 'integration_connections', 'id',
   'encrypted_payload', 'encryption_iv', 'encryption_tag', 'key_version'),
  ('activation_credentials', 'activation_credentials', 'id',
   'encrypted_data', 'encryption_iv', 'encryption_tag', 'key_version'),
  ('vps_ssh', 'vps_instances', 'id',
   'encrypted_ssh_private_key', 'ssh_encryption_iv', 'ssh_encryption_tag', 'ssh_key_version'),
  ('vps_n8n', 'vps_instances', 'id',
   'encrypted_n8n_credentials', 'n8n_encryption_iv', 'n8n_encryption_tag', 'n8n_key_version');
ALTER TABLE public.encrypted_columns ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.encrypted_columns FORCE ROW LEVEL SECURITY;
CREATE POLICY encrypted_columns_select_admin ON public.encrypted_columns
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.encrypted_columns FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.encrypted_columns TO authenticated, service_role;

-- Who may rotate: the service role, or an admin holding a human signature.
CREATE FUNCTION public.assert_may_rotate_keys()
RETURNS void
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins rotate keys' USING ERRCODE = '42501';
  END IF;
  PERFORM public.assert_human_signature('ths');
END
$$;
REVOKE ALL ON FUNCTION public.assert_may_rotate_keys() FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.encrypted_column(p_name text)
RETURNS public.encrypted_columns
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  column_set public.encrypted_columns;
BEGIN
  SELECT * INTO column_set FROM public.encrypted_columns WHERE name = p_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown encrypted column set %', p_name USING ERRCODE = '22023';
  END IF;
  RETURN column_set;
END
$$;
REVOKE ALL ON FUNCTION public.encrypted_column(text) FROM PUBLIC, anon, authenticated, service_role;

-- How many values of a column set are on each key version and scheme (v2 = bound).
CREATE FUNCTION public.count_encrypted_values(p_name text)
RETURNS TABLE (key_version integer, scheme text, n bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  c public.encrypted_columns;
BEGIN
  PERFORM public.assert_may_rotate_keys();
  c := public.encrypted_column(p_name);
  RETURN QUERY EXECUTE format(
    'SELECT %1$I, CASE WHEN %2$I LIKE ''v2:%%'' THEN ''v2'' ELSE ''v1'' END, count(*)
     FROM public.%3$I WHERE %2$I IS NOT NULL AND %2$I <> '''' GROUP BY 1, 2 ORDER BY 1, 2',
    c.version_column, c.ciphertext_column, c.table_name);
END
$$;
REVOKE ALL ON FUNCTION public.count_encrypted_values(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.count_encrypted_values(text) TO authenticated, service_role;

-- The next batch of values not yet on `p_version` with the bound scheme, after `p_after`
-- (ids ascending): rotation walks the table in id order and can resume anywhere.
CREATE FUNCTION public.encrypted_values_to_rotate(
  p_name text, p_version integer, p_after uuid, p_limit integer
)
RETURNS TABLE (id uuid, ciphertext text, iv text, tag text, key_version integer)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  c public.encrypted_columns;
BEGIN
  PERFORM public.assert_may_rotate_keys();
  c := public.encrypted_column(p_name);
  RETURN QUERY EXECUTE format(
    'SELECT %1$I, %2$I, %3$I, %4$I, %5$I FROM public.%6$I
     WHERE %2$I IS NOT NULL AND %2$I <> '''' AND (%5$I <> $1 OR %2$I NOT LIKE ''v2:%%'')
       AND %1$I > coalesce($2, ''00000000-0000-0000-0000-000000000000''::uuid)
     ORDER BY %1$I LIMIT $3',
    c.id_column, c.ciphertext_column, c.iv_column, c.tag_column, c.version_column,
    c.table_name)
  USING p_version, p_after, p_limit;
END
$$;
REVOKE ALL ON FUNCTION public.encrypted_values_to_rotate(text, integer, uuid, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.encrypted_values_to_rotate(text, integer, uuid, integer)
  TO authenticated, service_role;

-- Store a batch of re-sealed values, each only if its row still holds what was read (a
-- concurrent change wins and is picked up by the next run). `p_values` is a JSON array
-- of {id, previous_ciphertext, ciphertext, iv, tag, key_version}; returns the ids stored.
CREATE FUNCTION public.store_rotated_values(p_name text, p_values jsonb)
RETURNS SETOF uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  c public.encrypted_columns;
BEGIN
  PERFORM public.assert_may_rotate_keys();
  c := public.encrypted_column(p_name);
  IF jsonb_typeof(p_values) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'values must be a JSON array' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (
    SELECT 1 FROM jsonb_array_elements(p_values) AS v
    WHERE v ->> 'ciphertext' IS NULL OR v ->> 'ciphertext' NOT LIKE 'v2:%'
       OR v ->> 'iv' IS NULL OR v ->> 'tag' IS NULL OR v ->> 'id' IS NULL
       OR v ->> 'previous_ciphertext' IS NULL OR (v ->> 'key_version')::integer < 1
  ) THEN
    RAISE EXCEPTION 'rotated values use the bound scheme and name every field'
      USING ERRCODE = '22023';
  END IF;
  RETURN QUERY EXECUTE format(
    'UPDATE public.%1$I AS t SET %2$I = v.ciphertext, %3$I = v.iv, %4$I = v.tag,
            %5$I = v.key_version
     FROM jsonb_to_recordset($1) AS v(id uuid, previous_ciphertext text, ciphertext text,
                                      iv text, tag text, key_version integer)
     WHERE t.%6$I = v.id AND t.%2$I = v.previous_ciphertext
     RETURNING t.%6$I',
    c.table_name, c.ciphertext_column, c.iv_column, c.tag_column, c.version_column,
    c.id_column)
  USING p_values;
END
$$;
REVOKE ALL ON FUNCTION public.store_rotated_values(text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.store_rotated_values(text, jsonb)
  TO authenticated, service_role;

-- The audit row of a rotation run (counts only).
CREATE FUNCTION public.record_key_rotation(p_summary jsonb)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  PERFORM public.assert_may_rotate_keys();
  PERFORM public.audit_event(
    'rotate:credentials', 'KEY_ROTATION: credentials re-sealed with the newest key',
    coalesce(p_summary, '{}'),
    CASE WHEN (p_summary ->> 'unreadable')::integer > 0 THEN 'warn' ELSE 'info' END
  );
END
$$;
REVOKE ALL ON FUNCTION public.record_key_rotation(jsonb) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_key_rotation(jsonb) TO authenticated, service_role;

-- -- Activation credentials (per activation request) ----------------------------------

-- The request must be the caller's (or the service role acts).
CREATE FUNCTION public.owned_installation_request(p_request_id uuid)
RETURNS public.installation_requests
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  request public.installation_requests;
BEGIN
  SELECT * INTO request FROM public.installation_requests WHERE id = p_request_id;
  IF NOT FOUND OR (auth.role() IS DISTINCT FROM 'service_role'
                   AND request.user_id IS DISTINCT FROM auth.uid()) THEN
    RAISE EXCEPTION 'no such activation request' USING ERRCODE = 'PT404';
  END IF;
  RETURN request;
END
$$;
REVOKE ALL ON FUNCTION public.owned_installation_request(uuid)
  FROM PUBLIC, anon, authenticated, service_role;

-- The row id a credential of this type will have (existing or new): the application
-- binds the ciphertext to it before storing.
CREATE FUNCTION public.activation_credential_slot(p_request_id uuid, p_credential_type text)
RETURNS uuid
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  existing uuid;
BEGIN
  PERFORM public.owned_installation_request(p_request_id);
  SELECT id INTO existing FROM public.activation_credentials
  WHERE request_id = p_request_id AND credential_type = p_credential_type;
  RETURN coalesce(existing, gen_random_uuid());
END
$$;
REVOKE ALL ON FUNCTION public.activation_credential_slot(uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.activation_credential_slot(uuid, text) TO authenticated, service_role;

CREATE FUNCTION public.recount_activation_credentials(p_request_id uuid)
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  active integer;
BEGIN
  SELECT count(*) INTO active FROM public.activation_credentials
  WHERE request_id = p_request_id AND status = 'active';
  UPDATE public.installation_requests SET credentials_count = active WHERE id = p_request_id;
  RETURN active;
END
$$;
REVOKE ALL ON FUNCTION public.recount_activation_credentials(uuid)
  FROM PUBLIC, anon, authenticated, service_role;

-- Store (or replace) a sealed credential of the caller's activation.
CREATE FUNCTION public.store_activation_credential(
  p_id uuid, p_request_id uuid, p_credential_type text, p_service_name text,
  p_ciphertext text, p_iv text, p_tag text, p_key_version integer, p_metadata jsonb
)
RETURNS TABLE (id uuid, credential_type text, service_name text, status text, created_at timestamptz)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  request public.installation_requests;
  stored public.activation_credentials;
BEGIN
  request := public.owned_installation_request(p_request_id);
  IF p_credential_type !~ '^[a-z0-9_]{1,60}$' OR char_length(p_service_name) NOT BETWEEN 1 AND 100 THEN
    RAISE EXCEPTION 'credential type is [a-z0-9_]{1,60} and service name 1-100 characters'
      USING ERRCODE = '22023';
  END IF;
  IF p_ciphertext NOT LIKE 'v2:%' THEN
    RAISE EXCEPTION 'credentials are stored sealed' USING ERRCODE = '22023';
  END IF;
  IF auth.role() IS DISTINCT FROM 'service_role' THEN
    PERFORM public.enforce_rate_limit('store-activation-credentials', 30, 3600);
  END IF;
  INSERT INTO public.activation_credentials AS a (
    id, request_id, credential_type, service_name, encrypted_data, encryption_iv,
    encryption_tag, key_version, status, created_by, metadata
  ) VALUES (
    p_id, p_request_id, p_credential_type, p_service_name, p_ciphertext, p_iv, p_tag,
    p_key_version, 'active', coalesce(auth.jwt() ->> 'email', auth.uid()::text, 'service'),
    coalesce(p_metadata, '{}')
  )
  ON CONFLICT (request_id, credential_type) DO UPDATE
    SET service_name = EXCLUDED.service_name, encrypted_data = EXCLUDED.encrypted_data,
        encryption_iv = EXCLUDED.encryption_iv, encryption_tag = EXCLUDED.encryption_tag,
        key_version = EXCLUDED.key_version, status = 'active', metadata = EXCLUDED.metadata,
        revoked_at = NULL, revoked_by = NULL, revocation_reason = NULL
    WHERE a.id = EXCLUDED.id  -- the ciphertext is bound to this row id
  RETURNING * INTO stored;
  IF stored.id IS NULL THEN
    RAISE EXCEPTION 'the credential changed meanwhile; try again' USING ERRCODE = 'PT409';
  END IF;
  PERFORM public.recount_activation_credentials(p_request_id);
  UPDATE public.installation_requests
  SET credentials_submitted_at = now(), customer_visible_status = 'in_review',
      status_updated_at = now()
  WHERE installation_requests.id = p_request_id;
  INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
  VALUES ('credential_submitted',
          format('CREDENTIAL_SUBMITTED: %s', left(request.name, 100)),
          format('%s credentials submitted for activation %s', p_service_name, p_request_id),
          'info',
          jsonb_build_object('request_id', p_request_id, 'credential_type', p_credential_type));
  RETURN QUERY SELECT stored.id, stored.credential_type, stored.service_name, stored.status,
                      stored.created_at;
END
$$;
REVOKE ALL ON FUNCTION public.store_activation_credential(uuid, uuid, text, text, text, text, text, integer, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.store_activation_credential(uuid, uuid, text, text, text, text, text, integer, jsonb)
  TO authenticated, service_role;

-- Sealed credentials for an admin holding a human signature (or the service role); the
-- read is audited before anything is returned.
CREATE FUNCTION public.read_activation_credentials(p_credential_id uuid, p_request_id uuid)
RETURNS TABLE (
  id uuid, request_id uuid, credential_type text, service_name text, status text,
  created_at timestamptz, created_by text, metadata jsonb,
  encrypted_data text, encryption_iv text, encryption_tag text, key_version integer
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  read_ids uuid[];
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins read credentials' USING ERRCODE = '42501';
  END IF;
  PERFORM public.assert_human_signature('ths');
  IF p_credential_id IS NULL AND p_request_id IS NULL THEN
    RAISE EXCEPTION 'name a credential or a request' USING ERRCODE = '22023';
  END IF;
  SELECT array_agg(a.id) INTO read_ids FROM public.activation_credentials a
  WHERE (p_credential_id IS NULL OR a.id = p_credential_id)
    AND (p_request_id IS NULL OR a.request_id = p_request_id);
  IF read_ids IS NULL THEN
    RAISE EXCEPTION 'no such credentials' USING ERRCODE = 'PT404';
  END IF;
  UPDATE public.activation_credentials a SET last_verified_at = now() WHERE a.id = ANY (read_ids);
  PERFORM public.audit_event(
    'read:activation_credentials',
    format('CREDENTIAL_READ: %s credential(s)', cardinality(read_ids)),
    jsonb_build_object('credential_ids', to_jsonb(read_ids), 'request_id', p_request_id)
  );
  RETURN QUERY
    SELECT a.id, a.request_id, a.credential_type, a.service_name, a.status, a.created_at,
           a.created_by, a.metadata, a.encrypted_data, a.encryption_iv, a.encryption_tag,
           a.key_version
    FROM public.activation_credentials a WHERE a.id = ANY (read_ids) ORDER BY a.created_at;
END
$$;
REVOKE ALL ON FUNCTION public.read_activation_credentials(uuid, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.read_activation_credentials(uuid, uuid) TO authenticated, service_role;

-- The activation's owner or an admin revokes a credential (final; the ciphertext goes).
CREATE FUNCTION public.revoke_activation_credential(p_credential_id uuid, p_reason text)
RETURNS TABLE (id uuid, service_name text, revoked_at timestamptz, revoked_by text)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  credential public.activation_credentials;
  request_owner uuid;
BEGIN
  SELECT a.* INTO credential FROM public.activation_credentials a WHERE a.id = p_credential_id
  FOR UPDATE;
  SELECT r.user_id INTO request_owner FROM public.installation_requests r
  WHERE r.id = credential.request_id;
  IF credential.id IS NULL OR (auth.role() IS DISTINCT FROM 'service_role'
     AND request_owner IS DISTINCT FROM auth.uid() AND NOT public.is_admin()) THEN
    RAISE EXCEPTION 'no such credential' USING ERRCODE = 'PT404';
  END IF;
  IF credential.status = 'revoked' THEN
    RAISE EXCEPTION 'the credential is already revoked' USING ERRCODE = 'PT409';
  END IF;
  -- Revoked means revoked: the sealed value is destroyed, not kept.
  UPDATE public.activation_credentials a
  SET status = 'revoked', revoked_at = now(),
      revoked_by = coalesce(auth.jwt() ->> 'email', auth.uid()::text, 'service'),
      revocation_reason = left(coalesce(p_reason, 'User requested revocation'), 500),
      encrypted_data = '', encryption_iv = '', encryption_tag = ''
  WHERE a.id = p_credential_id
  RETURNING * INTO credential;
  PERFORM public.recount_activation_credentials(credential.request_id);
  PERFORM public.audit_event('revoke:activation_credentials',
    format('CREDENTIAL_REVOKED: %s', p_credential_id),
    jsonb_build_object('credential_id', p_credential_id, 'request_id', credential.request_id));
  RETURN QUERY SELECT credential.id, credential.service_name, credential.revoked_at,
                      credential.revoked_by;
END
$$;
REVOKE ALL ON FUNCTION public.revoke_activation_credential(uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.revoke_activation_credential(uuid, text) TO authenticated, service_role;

-- -- Connect-Once integrations (per user and provider) --------------------------------

-- The row id the caller's live connection to `p_provider` has, or will have.
CREATE FUNCTION public.integration_connection_slot(p_provider text)
RETURNS uuid
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  existing uuid;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to connect an integration' USING ERRCODE = '42501';
  END IF;
  SELECT id INTO existing FROM public.integration_connections
  WHERE user_id = auth.uid() AND provider = p_provider AND status NOT IN ('archived', 'revoked');
  RETURN coalesce(existing, gen_random_uuid());
END
$$;
REVOKE ALL ON FUNCTION public.integration_connection_slot(text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.integration_connection_slot(text) TO authenticated;

CREATE FUNCTION public.connect_integration(
  p_id uuid, p_provider text, p_ciphertext text, p_iv text, p_tag text, p_key_version integer,
  p_granted_scopes text[], p_connected_email text
)
RETURNS TABLE (id uuid, provider text, status text, updated_at timestamptz)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  caller uuid := auth.uid();
  stored public.integration_connections;
BEGIN
  IF caller IS NULL THEN
    RAISE EXCEPTION 'sign in to connect an integration' USING ERRCODE = '42501';
  END IF;
  IF p_provider !~ '^[a-z0-9_]{1,40}$' THEN
    RAISE EXCEPTION 'provider names are [a-z0-9_]{1,40}' USING ERRCODE = '22023';
  END IF;
  IF p_ciphertext NOT LIKE 'v2:%' THEN
    RAISE EXCEPTION 'credentials are stored sealed' USING ERRCODE = '22023';
  END IF;
  PERFORM public.enforce_rate_limit('connect-integration', 30, 3600);
  UPDATE public.integration_connections c
  SET status = 'connected', encrypted_payload = p_ciphertext, encryption_iv = p_iv,
      encryption_tag = p_tag, key_version = p_key_version, granted_scopes = p_granted_scopes,
      connected_email = left(p_connected_email, 320), activation_request_id = NULL
  WHERE c.id = p_id AND c.user_id = caller AND c.provider = p_provider
    AND c.status NOT IN ('archived', 'revoked')
  RETURNING * INTO stored;
  IF stored.id IS NULL THEN
    INSERT INTO public.integration_connections (
      id, user_id, provider, status, encrypted_payload, encryption_iv, encryption_tag,
      key_version, granted_scopes, connected_email
    ) VALUES (
      p_id, caller, p_provider, 'connected', p_ciphertext, p_iv, p_tag, p_key_version,
      p_granted_scopes, left(p_connected_email, 320)
    )
    RETURNING * INTO stored;
  END IF;
  INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
  VALUES ('integration_connected', format('INTEGRATION_CONNECTED: %s', p_provider),
          format('A client connected %s', p_provider), 'info',
          jsonb_build_object('provider', p_provider, 'user_id', caller));
  RETURN QUERY SELECT stored.id, stored.provider, stored.status, stored.updated_at;
END
$$;
REVOKE ALL ON FUNCTION public.connect_integration(uuid, text, text, text, text, integer, text[], text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.connect_integration(uuid, text, text, text, text, integer, text[], text)
  TO authenticated;

-- Revoke the caller's connections to a provider (their sealed values go too).
CREATE FUNCTION public.revoke_integration(p_provider text)
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  revoked integer;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to manage integrations' USING ERRCODE = '42501';
  END IF;
  UPDATE public.integration_connections
  SET status = 'revoked', encrypted_payload = NULL, encryption_iv = NULL, encryption_tag = NULL
  WHERE user_id = auth.uid() AND provider = p_provider AND status NOT IN ('archived', 'revoked');
  GET DIAGNOSTICS revoked = ROW_COUNT;
  RETURN revoked;
END
$$;
REVOKE ALL ON FUNCTION public.revoke_integration(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.revoke_integration(text) TO authenticated;

-- What an activation needs connected: the providers its automation (or the bundle's
-- automations) name in required_integrations, against the owner's live connections.
CREATE FUNCTION public.activation_readiness(p_request_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  request public.installation_requests;
  required text[];
  connected text[];
BEGIN
  IF public.is_admin() THEN
    SELECT * INTO request FROM public.installation_requests WHERE id = p_request_id;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no such activation request' USING ERRCODE = 'PT404';
    END IF;
  ELSE
    request := public.owned_installation_request(p_request_id);
  END IF;
  SELECT coalesce(array_agg(DISTINCT lower(item ->> 'provider') ORDER BY lower(item ->> 'provider')), '{}')
  INTO required
  FROM public.automation_agents a
  CROSS JOIN LATERAL jsonb_array_elements(a.required_integrations) AS item
  WHERE (a.id = request.automation_id
         OR a.id = ANY (SELECT unnest(b.included_agent_ids) FROM public.automation_bundles b
                        WHERE b.id = request.bundle_id))
    AND item ->> 'provider' IS NOT NULL;
  SELECT coalesce(array_agg(DISTINCT provider ORDER BY provider), '{}') INTO connected
  FROM public.integration_connections
  WHERE user_id = request.user_id AND status = 'connected';
  RETURN jsonb_build_object(
    'all_connected', required <@ connected,
    'required', to_jsonb(required),
    'connected', to_jsonb(ARRAY(
      SELECT p FROM (SELECT unnest(required) INTERSECT SELECT unnest(connected)) AS t(p)
      ORDER BY p)),
    'missing', to_jsonb(ARRAY(
      SELECT p FROM (SELECT unnest(required) EXCEPT SELECT unnest(connected)) AS t(p)
      ORDER BY p)),
    'activation_status', request.status
  );
END
$$;
REVOKE ALL ON FUNCTION public.activation_readiness(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.activation_readiness(uuid) TO authenticated, service_role;

-- When everything an activation needs is connected, queue its activation (the n8n
-- lifecycle runs it) once. Returns the job id, or NULL when not ready or already live.
CREATE FUNCTION public.request_auto_activation(p_request_id uuid)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  request public.installation_requests;
  readiness jsonb;
BEGIN
  request := public.owned_installation_request(p_request_id);
  readiness := public.activation_readiness(p_request_id);
  IF NOT (readiness ->> 'all_connected')::boolean
     OR request.status IN ('live', 'active', 'in_build', 'cancelled', 'completed') THEN
    RETURN NULL;
  END IF;
  UPDATE public.installation_requests
  SET status = 'in_build', customer_visible_status = 'in_build', status_updated_at = now()
  WHERE id = p_request_id;
  RETURN public.enqueue_provisioning(
    request.user_id, 'activate_workflows',
    jsonb_build_object('activation_request_id', p_request_id, 'source', 'connect-integration'),
    p_request_id, 'auto-activate:' || p_request_id
  );
END
$$;
REVOKE ALL ON FUNCTION public.request_auto_activation(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.request_auto_activation(uuid) TO authenticated, service_role;

-- -- Rate limits for every endpoint ------------------------------------------------------

-- The fixed window a moment falls in (every limiter counts in these windows).
CREATE FUNCTION public.rate_limit_window_start(p_window_seconds integer)
RETURNS timestamptz
LANGUAGE sql
VOLATILE
SET search_path = ''
AS $$
  SELECT to_timestamp(
    floor(extract(epoch FROM clock_timestamp()) / p_window_seconds) * p_window_seconds
  )
$$;
REVOKE ALL ON FUNCTION public.rate_limit_window_start(integer)
  FROM PUBLIC, anon, authenticated, service_role;

-- Count one hit for an identity the caller has already established (the function
-- runtime, after verifying the JWT; or an address for anonymous callers). Service role
-- only: users go through check_rate_limit, which names them itself.
CREATE FUNCTION public.hit_rate_limit(
  p_identity text, p_key text, p_max integer, p_window_seconds integer
)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  this_window timestamptz;
  counted integer;
BEGIN
  IF p_identity IS NULL OR char_length(p_identity) NOT BETWEEN 1 AND 100 THEN
    RAISE EXCEPTION 'rate limits need an identity of 1-100 characters' USING ERRCODE = '22023';
  END IF;
  IF p_key IS NULL OR p_key !~ '^[A-Za-z0-9_.:/@-]{1,200}$' THEN
    RAISE EXCEPTION 'rate limit key must be 1-200 characters of [A-Za-z0-9_.:/@-]'
      USING ERRCODE = '22023';
  END IF;
  IF p_max IS NULL OR p_max < 1 OR p_window_seconds IS NULL
     OR p_window_seconds < 1 OR p_window_seconds > 86400 THEN
    RAISE EXCEPTION 'rate limits need max >= 1 and a window of 1 to 86400 seconds'
      USING ERRCODE = '22023';
  END IF;
  this_window := public.rate_limit_window_start(p_window_seconds);
  INSERT INTO public.rate_limits AS r (identifier, action_type, window_start)
  VALUES (p_identity, p_key, this_window)
  ON CONFLICT (identifier, action_type, window_start)
    DO UPDATE SET hits = r.hits + 1
  RETURNING hits INTO counted;
  RETURN counted <= p_max;
END
$$;
REVOKE ALL ON FUNCTION public.hit_rate_limit(text, text, integer, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.hit_rate_limit(text, text, integer, integer) TO service_role;

-- Give back a hit of the current window (an attempt that did not happen after all, e.g.
-- the upstream refused a reboot): the next try is not held back by a failure.
CREATE FUNCTION public.refund_rate_limit(p_identity text, p_key text, p_window_seconds integer)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  this_window timestamptz := public.rate_limit_window_start(p_window_seconds);
BEGIN
  DELETE FROM public.rate_limits
  WHERE identifier = p_identity AND action_type = p_key AND window_start = this_window
    AND hits = 1;
  IF NOT FOUND THEN
    UPDATE public.rate_limits SET hits = hits - 1
    WHERE identifier = p_identity AND action_type = p_key AND window_start = this_window;
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.refund_rate_limit(text, text, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.refund_rate_limit(text, text, integer) TO service_role;

-- The caller-keyed limiter now counts through the one above.
CREATE OR REPLACE FUNCTION public.check_rate_limit(p_key text, p_max integer, p_window_seconds integer)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  caller text := CASE
    WHEN auth.role() = 'service_role' THEN 'service'
    WHEN auth.role() = 'authenticated' AND auth.uid() IS NOT NULL THEN 'user:' || auth.uid()
  END;
BEGIN
  IF caller IS NULL THEN
    RAISE EXCEPTION 'rate limits count signed-in callers only' USING ERRCODE = '42501';
  END IF;
  RETURN public.hit_rate_limit(caller, p_key, p_max, p_window_seconds);
END
$$;
