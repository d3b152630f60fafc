-- The provisioning queue's rules: enqueue (idempotent), claim (one statement, FOR UPDATE
-- SKIP LOCKED, the attempt counted in the same statement), leases that a crashed worker
-- loses, completion and failure only by the current holder of a claim, backoff
-- min(60·2^(n−1), 3600) s, waiting for Hostinger without counting an attempt, and the
-- bookkeeping that keeps a VPS from being bought twice.
--
-- A claim is identified by (job id, lease = the job's claim number, worker id): a worker
-- that lost its lease (a "zombie") is refused when it reports back.

ALTER TABLE public.provisioning_queue
  ADD COLUMN worker_id text CHECK (char_length(worker_id) <= 200),
  ADD COLUMN lease_expires_at timestamptz,
  ADD COLUMN claims integer NOT NULL DEFAULT 0 CHECK (claims >= 0),
  ADD COLUMN attempt_counted boolean NOT NULL DEFAULT false,
  ADD COLUMN step text NOT NULL DEFAULT 'start' CHECK (step ~ '^[a-z_]{1,40}$'),
  ADD COLUMN wait_deadline timestamptz,
  ADD COLUMN idempotency_key text CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
  ADD COLUMN vps_instance_id uuid REFERENCES public.vps_instances (id) ON DELETE SET NULL,
  ADD COLUMN purchase_started_at timestamptz,
  ADD COLUMN result jsonb;
COMMENT ON COLUMN public.provisioning_queue.claims IS
  'How many times the job was claimed; the current claim number is its lease';
COMMENT ON COLUMN public.provisioning_queue.attempt_counted IS
  'Whether the current claim counted as an attempt (resuming a wait does not)';
COMMENT ON COLUMN public.provisioning_queue.purchase_started_at IS
  'Set before a purchase request is sent; cleared only when the purchase surely did not happen';

-- `waiting`: the job waits for Hostinger and resumes on its own, without counting attempts.
ALTER TABLE public.provisioning_queue DROP CONSTRAINT provisioning_queue_status_check;
ALTER TABLE public.provisioning_queue ADD CONSTRAINT provisioning_queue_status_check
  CHECK (status IN ('queued', 'processing', 'waiting', 'completed', 'failed', 'retrying', 'cancelled'));

-- The claim's order (scheduled_at, id) straight from the index, however many are due.
DROP INDEX public.provisioning_queue_due_idx;
CREATE INDEX provisioning_queue_due_idx
  ON public.provisioning_queue (scheduled_at, id) WHERE status IN ('queued', 'retrying', 'waiting');
-- A user's jobs in progress (quota and tier checks), without reading finished ones.
CREATE INDEX provisioning_queue_open_user_idx
  ON public.provisioning_queue (user_id)
  WHERE status IN ('queued', 'processing', 'waiting', 'retrying');
CREATE INDEX provisioning_queue_leases_idx
  ON public.provisioning_queue (lease_expires_at) WHERE status = 'processing';
CREATE UNIQUE INDEX provisioning_queue_idempotency_key
  ON public.provisioning_queue (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Owners also read what their job produced (the VPS row id, the result).
GRANT SELECT ON TABLE public.provisioning_queue TO authenticated;

INSERT INTO public.system_registry (namespace, key, value, description) VALUES
  ('hostinger', 'plans',
   '{"starter": "hostingercom-vps-kvm1-usd-1m", "standard": "hostingercom-vps-kvm2-usd-1m", "pro": "hostingercom-vps-kvm4-usd-1m", "enterprise": "hostingercom-vps-kvm8-usd-1m"}',
   'Plan name -> Hostinger catalog price id (item_id), JSON'),
  ('hostinger', 'regions', '{}',
   'Region name -> Hostinger data_center_id, JSON (GET /api/vps/v1/data-centers lists them)'),
  ('hostinger', 'template_id', NULL, 'Hostinger OS template id for new VPS (an n8n template)'),
  ('hostinger', 'payment_method_id', NULL, 'Hostinger payment method id (empty: the default)'),
  ('hostinger', 'max_open_jobs_per_user', '2', 'VPS requests in progress allowed per user'),
  ('hostinger', 'provision_rate_max', '5', 'VPS requests a caller may make per window'),
  ('hostinger', 'provision_rate_window_s', '3600', 'The window of provision_rate_max, seconds'),
  ('hostinger', 'setup_timeout_s', '1800', 'How long a new VPS may take to reach running'),
  ('hostinger', 'poll_interval_s', '15', 'How often a waiting job asks Hostinger again'),
  ('hostinger', 'confirm_purchase_s', '900',
   'How long a purchase whose reply was lost may take to show up before the job fails'),
  ('queue', 'lease_s', '300', 'How long a claim holds a job without renewal'),
  ('queue', 'batch_size', '5', 'Jobs one queue-processor run claims');

-- An integer or JSON setting of the registry (internal).
CREATE FUNCTION public.registry_int(p_namespace text, p_key text, p_default integer)
RETURNS integer
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT coalesce(
    (SELECT value::integer FROM public.system_registry
     WHERE namespace = p_namespace AND key = p_key AND value ~ '^[0-9]+$'),
    p_default
  )
$$;
REVOKE ALL ON FUNCTION public.registry_int(text, text, integer)
  FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.registry_json(p_namespace text, p_key text)
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT coalesce(
    (SELECT value::jsonb FROM public.system_registry
     WHERE namespace = p_namespace AND key = p_key AND value IS NOT NULL),
    '{}'::jsonb
  )
$$;
REVOKE ALL ON FUNCTION public.registry_json(text, text) FROM PUBLIC, anon, authenticated, service_role;

-- The delay after the n-th failed attempt: 60, 120, 240 … seconds, at most one hour.
CREATE FUNCTION public.provisioning_retry_delay(p_failed_attempts integer)
RETURNS interval
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT make_interval(secs => least(60 * power(2, greatest(p_failed_attempts, 1) - 1), 3600))
$$;
REVOKE ALL ON FUNCTION public.provisioning_retry_delay(integer)
  FROM PUBLIC, anon, authenticated, service_role;

-- A queue event in the provenance log (function_name `queue-processor`, as the original).
CREATE FUNCTION public.log_queue_event(
  p_job public.provisioning_queue, p_level text, p_message text, p_details jsonb DEFAULT '{}'
)
RETURNS void
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
  INSERT INTO public.edge_function_logs (function_name, level, message, details, user_id)
  VALUES (
    'queue-processor', p_level, p_message,
    jsonb_build_object(
      'job_id', p_job.id, 'action', p_job.action, 'attempt', p_job.attempt_count,
      'step', p_job.step, 'worker_id', p_job.worker_id
    ) || coalesce(p_details, '{}'::jsonb),
    p_job.user_id
  )
$$;
REVOKE ALL ON FUNCTION public.log_queue_event(public.provisioning_queue, text, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;

-- Add a job (service role). The same idempotency key for the same user returns the same
-- job. Workers waiting on LISTEN provisioning_queue wake up at commit.
CREATE FUNCTION public.enqueue_provisioning(
  p_user_id uuid,
  p_action text,
  p_payload jsonb DEFAULT '{}',
  p_activation_request_id uuid DEFAULT NULL,
  p_idempotency_key text DEFAULT NULL,
  p_max_attempts integer DEFAULT 3
)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job_id uuid;
BEGIN
  INSERT INTO public.provisioning_queue
    (user_id, action, payload, activation_request_id, idempotency_key, max_attempts)
  VALUES
    (p_user_id, p_action, coalesce(p_payload, '{}'), p_activation_request_id,
     p_idempotency_key, coalesce(p_max_attempts, 3))
  ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING id INTO job_id;
  IF job_id IS NULL THEN
    SELECT id INTO job_id FROM public.provisioning_queue
    WHERE user_id = p_user_id AND idempotency_key = p_idempotency_key;
    RETURN job_id;
  END IF;
  PERFORM pg_catalog.pg_notify('provisioning_queue', job_id::text);
  RETURN job_id;
END
$$;
REVOKE ALL ON FUNCTION public.enqueue_provisioning(uuid, text, jsonb, uuid, text, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.enqueue_provisioning(uuid, text, jsonb, uuid, text, integer)
  TO service_role;

-- A client (or an admin, for `p_target_user_id`) asks for a VPS. Checks, in order: who
-- asks, the plan and region (registry maps), the activation request, the tier's room for
-- another VPS (admins bypass), the open-request quota and the caller's rate limit. The
-- payload carries everything the worker needs (item_id, data_center_id).
CREATE FUNCTION public.request_vps_provisioning(
  p_plan text,
  p_region text,
  p_activation_request_id uuid DEFAULT NULL,
  p_notes text DEFAULT NULL,
  p_target_user_id uuid DEFAULT NULL,
  p_idempotency_key text DEFAULT NULL
)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  caller uuid := auth.uid();
  service boolean := auth.role() = 'service_role';
  admin boolean;
  target uuid;
  existing uuid;
  item_id text;
  data_center_id text;
  max_vps integer;
  in_use integer;
  open_jobs integer;
BEGIN
  IF NOT service AND (auth.role() IS DISTINCT FROM 'authenticated' OR caller IS NULL) THEN
    RAISE EXCEPTION 'sign in to request a VPS' USING ERRCODE = '42501';
  END IF;
  admin := service OR public.user_is_admin(caller);
  IF p_target_user_id IS NOT NULL AND p_target_user_id IS DISTINCT FROM caller AND NOT admin THEN
    RAISE EXCEPTION 'only admins may provision for another user' USING ERRCODE = '42501';
  END IF;
  target := coalesce(p_target_user_id, caller);
  IF target IS NULL OR NOT EXISTS (SELECT 1 FROM auth.users WHERE id = target) THEN
    RAISE EXCEPTION 'unknown target user' USING ERRCODE = '22023';
  END IF;

  IF p_idempotency_key IS NOT NULL THEN
    SELECT id INTO existing FROM public.provisioning_queue
    WHERE user_id = target AND idempotency_key = p_idempotency_key;
    IF FOUND THEN
      RETURN existing;
    END IF;
  END IF;

  item_id := public.registry_json('hostinger', 'plans') ->> p_plan;
  IF item_id IS NULL THEN
    RAISE EXCEPTION 'unknown plan'
      USING ERRCODE = '22023',
            HINT = 'one of: ' || coalesce((
              SELECT string_agg(key, ', ' ORDER BY key)
              FROM jsonb_object_keys(public.registry_json('hostinger', 'plans')) AS key), '');
  END IF;
  data_center_id := public.registry_json('hostinger', 'regions') ->> p_region;
  IF data_center_id IS NULL OR data_center_id !~ '^[0-9]+$' THEN
    RAISE EXCEPTION 'unknown region'
      USING ERRCODE = '22023',
            HINT = 'one of: ' || coalesce((
              SELECT string_agg(key, ', ' ORDER BY key)
              FROM jsonb_object_keys(public.registry_json('hostinger', 'regions')) AS key), '');
  END IF;
  IF char_length(p_notes) > 500 THEN
    RAISE EXCEPTION 'notes are limited to 500 characters' USING ERRCODE = '22023';
  END IF;
  IF p_activation_request_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM public.installation_requests
    WHERE id = p_activation_request_id AND user_id = target
  ) THEN
    RAISE EXCEPTION 'no such activation request for this user' USING ERRCODE = '22023';
  END IF;

  IF NOT admin THEN
    SELECT l.max_vps INTO max_vps FROM public.entitlement_limits(target) AS l;
    SELECT
      (SELECT count(*) FROM public.vps_instances WHERE user_id = target AND status <> 'terminated')
      + (SELECT count(*) FROM public.provisioning_queue
         WHERE user_id = target AND action = 'provision_vps' AND vps_instance_id IS NULL
           AND status IN ('queued', 'processing', 'waiting', 'retrying'))
    INTO in_use;
    IF max_vps IS NOT NULL AND in_use >= max_vps THEN
      RAISE EXCEPTION 'your plan allows % VPS', max_vps
        USING ERRCODE = 'PT403', HINT = 'upgrade your tier for more';
    END IF;
  END IF;

  SELECT count(*) INTO open_jobs FROM public.provisioning_queue
  WHERE user_id = target AND action = 'provision_vps'
    AND status IN ('queued', 'processing', 'waiting', 'retrying');
  IF open_jobs >= public.registry_int('hostinger', 'max_open_jobs_per_user', 2) THEN
    RAISE EXCEPTION 'too many VPS requests in progress' USING ERRCODE = 'PT429';
  END IF;

  PERFORM public.enforce_rate_limit(
    'hostinger-provision',
    public.registry_int('hostinger', 'provision_rate_max', 5),
    public.registry_int('hostinger', 'provision_rate_window_s', 3600)
  );

  RETURN public.enqueue_provisioning(
    target,
    'provision_vps',
    jsonb_build_object(
      'plan', p_plan, 'region', p_region, 'item_id', item_id,
      'data_center_id', data_center_id::bigint, 'notes', p_notes, 'requested_by', caller
    ),
    p_activation_request_id,
    p_idempotency_key
  );
END
$$;
REVOKE ALL ON FUNCTION public.request_vps_provisioning(text, text, uuid, text, uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.request_vps_provisioning(text, text, uuid, text, uuid, text)
  TO authenticated, service_role;

-- A client cancels their own job (admins any) while nothing has been bought for it.
CREATE FUNCTION public.cancel_provisioning_job(p_job_id uuid)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
  admin boolean := auth.role() = 'service_role' OR public.is_admin();
BEGIN
  SELECT * INTO job FROM public.provisioning_queue WHERE id = p_job_id FOR UPDATE;
  IF NOT FOUND OR (job.user_id IS DISTINCT FROM auth.uid() AND NOT admin) THEN
    RAISE EXCEPTION 'no such job' USING ERRCODE = 'PT404';
  END IF;
  IF job.status NOT IN ('queued', 'retrying') OR job.purchase_started_at IS NOT NULL THEN
    RAISE EXCEPTION 'the job is % and can no longer be cancelled', job.status
      USING ERRCODE = 'PT409';
  END IF;
  UPDATE public.provisioning_queue
  SET status = 'cancelled', completed_at = now(), last_error = 'cancelled'
  WHERE id = p_job_id
  RETURNING * INTO job;
  IF job.user_id IS DISTINCT FROM auth.uid() THEN
    PERFORM public.audit_event('cancel:provisioning_queue',
      format('JOB_CANCELLED: %s', p_job_id), jsonb_build_object('job_id', p_job_id));
  END IF;
  PERFORM public.log_queue_event(job, 'info', 'QUEUE_JOB_CANCELLED');
  RETURN job;
END
$$;
REVOKE ALL ON FUNCTION public.cancel_provisioning_job(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.cancel_provisioning_job(uuid) TO authenticated, service_role;

-- An operator sends a failed or cancelled job round again (admins, service role; audited).
CREATE FUNCTION public.retry_provisioning_job(p_job_id uuid)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'only admins retry jobs' USING ERRCODE = '42501';
  END IF;
  UPDATE public.provisioning_queue
  SET status = 'queued', attempt_count = 0, attempt_counted = false, scheduled_at = now(),
      completed_at = NULL, wait_deadline = NULL, worker_id = NULL, lease_expires_at = NULL
  WHERE id = p_job_id AND status IN ('failed', 'cancelled')
  RETURNING * INTO job;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'only failed or cancelled jobs can be retried' USING ERRCODE = 'PT409';
  END IF;
  PERFORM public.audit_event('retry:provisioning_queue',
    format('JOB_RETRIED: %s', p_job_id),
    jsonb_build_object('job_id', p_job_id, 'purchase_started_at', job.purchase_started_at));
  PERFORM pg_catalog.pg_notify('provisioning_queue', p_job_id::text);
  RETURN job;
END
$$;
REVOKE ALL ON FUNCTION public.retry_provisioning_job(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.retry_provisioning_job(uuid) TO authenticated, service_role;

-- Jobs whose worker stopped renewing its lease come back as a failed attempt.
CREATE FUNCTION public.recover_expired_provisioning_leases()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
  recovered integer := 0;
BEGIN
  FOR job IN
    WITH expired AS (
      SELECT id FROM public.provisioning_queue
      WHERE status = 'processing' AND lease_expires_at < now()
      FOR UPDATE SKIP LOCKED
    )
    UPDATE public.provisioning_queue q
    SET attempt_count = least(q.attempt_count + (NOT q.attempt_counted)::integer, q.max_attempts),
        attempt_counted = true,
        status = CASE
          WHEN least(q.attempt_count + (NOT q.attempt_counted)::integer, q.max_attempts)
               >= q.max_attempts THEN 'failed' ELSE 'retrying' END,
        scheduled_at = now() + public.provisioning_retry_delay(
          least(q.attempt_count + (NOT q.attempt_counted)::integer, q.max_attempts)),
        completed_at = CASE
          WHEN least(q.attempt_count + (NOT q.attempt_counted)::integer, q.max_attempts)
               >= q.max_attempts THEN now() END,
        last_error = 'the worker holding the job stopped (lease expired)',
        lease_expires_at = NULL
    FROM expired
    WHERE q.id = expired.id
    RETURNING q.*
  LOOP
    recovered := recovered + 1;
    PERFORM public.log_queue_event(
      job,
      CASE WHEN job.status = 'failed' THEN 'error' ELSE 'warn' END,
      CASE WHEN job.status = 'failed' THEN 'QUEUE_JOB_FAILED' ELSE 'QUEUE_JOB_RECOVERED' END,
      jsonb_build_object('error', job.last_error)
    );
  END LOOP;
  RETURN recovered;
END
$$;
REVOKE ALL ON FUNCTION public.recover_expired_provisioning_leases()
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.recover_expired_provisioning_leases() TO service_role;

-- Claim due jobs. One UPDATE selects them FOR UPDATE SKIP LOCKED, marks them processing,
-- counts the attempt (not when resuming a wait), bumps the claim number (the lease) and
-- sets the holder and the lease expiry.
CREATE FUNCTION public.claim_provisioning_jobs(
  p_limit integer, p_worker_id text, p_lease_seconds integer
)
RETURNS SETOF public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_worker_id IS NULL OR p_lease_seconds IS NULL
     OR p_lease_seconds < 1 THEN
    RAISE EXCEPTION 'claims need a limit, a worker id and a lease' USING ERRCODE = '22023';
  END IF;
  PERFORM public.recover_expired_provisioning_leases();
  RETURN QUERY
  UPDATE public.provisioning_queue q
  SET status = 'processing',
      attempt_count = q.attempt_count + (q.status <> 'waiting')::integer,
      attempt_counted = q.status <> 'waiting',
      claims = q.claims + 1,
      worker_id = p_worker_id,
      lease_expires_at = now() + make_interval(secs => p_lease_seconds),
      started_at = coalesce(q.started_at, now())
  FROM (
    SELECT id FROM public.provisioning_queue
    WHERE status IN ('queued', 'retrying', 'waiting') AND scheduled_at <= now()
    ORDER BY scheduled_at, id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  ) AS due
  WHERE q.id = due.id
  RETURNING q.*;
END
$$;
REVOKE ALL ON FUNCTION public.claim_provisioning_jobs(integer, text, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.claim_provisioning_jobs(integer, text, integer) TO service_role;

-- The job, locked, if (lease, worker) still hold it; a clear refusal otherwise.
CREATE FUNCTION public.held_provisioning_job(p_job_id uuid, p_lease integer, p_worker_id text)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
BEGIN
  SELECT * INTO job FROM public.provisioning_queue WHERE id = p_job_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no such job' USING ERRCODE = 'PT404';
  END IF;
  IF job.status <> 'processing' OR job.claims <> p_lease OR job.worker_id IS DISTINCT FROM p_worker_id THEN
    RAISE EXCEPTION 'job % is no longer held by worker % under lease %', p_job_id, p_worker_id, p_lease
      USING ERRCODE = 'PT409', HINT = 'another worker took it over after the lease expired';
  END IF;
  RETURN job;
END
$$;
REVOKE ALL ON FUNCTION public.held_provisioning_job(uuid, integer, text)
  FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.renew_provisioning_lease(
  p_job_id uuid, p_lease integer, p_worker_id text, p_lease_seconds integer
)
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  expires timestamptz;
BEGIN
  PERFORM public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  UPDATE public.provisioning_queue
  SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
  WHERE id = p_job_id
  RETURNING lease_expires_at INTO expires;
  RETURN expires;
END
$$;
REVOKE ALL ON FUNCTION public.renew_provisioning_lease(uuid, integer, text, integer)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.renew_provisioning_lease(uuid, integer, text, integer) TO service_role;

CREATE FUNCTION public.complete_provisioning_job(
  p_job_id uuid, p_lease integer, p_worker_id text, p_result jsonb DEFAULT '{}'
)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
BEGIN
  PERFORM public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  UPDATE public.provisioning_queue
  SET status = 'completed', completed_at = now(), result = coalesce(p_result, '{}'),
      last_error = NULL, lease_expires_at = NULL, wait_deadline = NULL
  WHERE id = p_job_id
  RETURNING * INTO job;
  PERFORM public.log_queue_event(job, 'info', 'QUEUE_JOB_COMPLETE');
  RETURN job;
END
$$;
REVOKE ALL ON FUNCTION public.complete_provisioning_job(uuid, integer, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.complete_provisioning_job(uuid, integer, text, jsonb) TO service_role;

-- A failed attempt: retrying after the backoff, or failed for good when it was the last
-- attempt or the error is final (e.g. a validation error from Hostinger). A job that
-- fails for good tells the operators.
CREATE FUNCTION public.fail_provisioning_job(
  p_job_id uuid, p_lease integer, p_worker_id text, p_error text, p_retryable boolean DEFAULT true
)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
  attempts integer;
  final boolean;
BEGIN
  job := public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  attempts := least(job.attempt_count + (NOT job.attempt_counted)::integer, job.max_attempts);
  final := NOT coalesce(p_retryable, true) OR attempts >= job.max_attempts;
  UPDATE public.provisioning_queue
  SET attempt_count = attempts,
      attempt_counted = true,
      status = CASE WHEN final THEN 'failed' ELSE 'retrying' END,
      scheduled_at = CASE WHEN final THEN scheduled_at
                          ELSE now() + public.provisioning_retry_delay(attempts) END,
      completed_at = CASE WHEN final THEN now() END,
      last_error = left(coalesce(p_error, 'unknown error'), 2000),
      lease_expires_at = NULL
  WHERE id = p_job_id
  RETURNING * INTO job;
  IF final THEN
    PERFORM public.log_queue_event(job, 'error', 'QUEUE_JOB_FAILED',
      jsonb_build_object('error', job.last_error));
    INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
    VALUES (
      'provisioning_failed',
      format('PROVISIONING_FAILED: job %s', left(job.id::text, 8)),
      job.last_error,
      'error',
      jsonb_build_object('job_id', job.id, 'user_id', job.user_id, 'action', job.action,
                         'attempts', job.attempt_count)
    );
  ELSE
    PERFORM public.log_queue_event(job, 'warn', 'QUEUE_JOB_RETRYING',
      jsonb_build_object('error', job.last_error,
                         'retry_in_seconds', extract(epoch FROM job.scheduled_at - now())::integer));
  END IF;
  RETURN job;
END
$$;
REVOKE ALL ON FUNCTION public.fail_provisioning_job(uuid, integer, text, text, boolean)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.fail_provisioning_job(uuid, integer, text, text, boolean)
  TO service_role;

-- Wait for an outside party (Hostinger) at `p_step`: the job comes back after
-- `p_delay_seconds` without counting an attempt, until `p_deadline_seconds` after it began
-- waiting at that step; past the deadline it fails for good (with `p_timeout_error`).
CREATE FUNCTION public.wait_provisioning_job(
  p_job_id uuid, p_lease integer, p_worker_id text, p_step text,
  p_delay_seconds integer, p_deadline_seconds integer, p_timeout_error text DEFAULT NULL
)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
  deadline timestamptz;
BEGIN
  job := public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  deadline := CASE WHEN job.step = p_step AND job.wait_deadline IS NOT NULL THEN job.wait_deadline
                   ELSE now() + make_interval(secs => p_deadline_seconds) END;
  IF now() >= deadline THEN
    RETURN public.fail_provisioning_job(p_job_id, p_lease, p_worker_id,
      coalesce(p_timeout_error,
               format('gave up waiting at step %s after %s seconds', p_step, p_deadline_seconds)),
      false);
  END IF;
  UPDATE public.provisioning_queue
  SET status = 'waiting', step = p_step, wait_deadline = deadline,
      scheduled_at = now() + make_interval(secs => greatest(p_delay_seconds, 0)),
      lease_expires_at = NULL
  WHERE id = p_job_id
  RETURNING * INTO job;
  RETURN job;
END
$$;
REVOKE ALL ON FUNCTION public.wait_provisioning_job(uuid, integer, text, text, integer, integer, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.wait_provisioning_job(uuid, integer, text, text, integer, integer, text)
  TO service_role;

-- -- VPS bookkeeping: secrets stored before buying, the purchase marked before it is sent.

-- The job's VPS row with the secrets the worker generated (sealed by aerelion.vault and
-- bound to this row), created once per job before anything is bought.
CREATE FUNCTION public.prepare_provisioned_vps(
  p_job_id uuid, p_lease integer, p_worker_id text, p_instance_id uuid, p_hostname text,
  p_ssh_ciphertext text, p_ssh_iv text, p_ssh_tag text, p_ssh_key_version integer,
  p_ssh_key_label text,
  p_n8n_ciphertext text, p_n8n_iv text, p_n8n_tag text, p_n8n_key_version integer
)
RETURNS public.vps_instances
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
  instance public.vps_instances;
BEGIN
  job := public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  IF job.vps_instance_id IS NOT NULL THEN
    RAISE EXCEPTION 'job % already has its VPS row', p_job_id USING ERRCODE = 'PT409';
  END IF;
  INSERT INTO public.vps_instances (
    id, user_id, status, hostname, plan, region, encrypted_ssh_private_key, ssh_encryption_iv,
    ssh_encryption_tag, ssh_key_version, ssh_key_label, encrypted_n8n_credentials,
    n8n_encryption_iv, n8n_encryption_tag, n8n_key_version, triggered_by,
    activation_request_id, notes
  ) VALUES (
    p_instance_id, job.user_id, 'provisioning', p_hostname, job.payload ->> 'plan',
    job.payload ->> 'region', p_ssh_ciphertext, p_ssh_iv, p_ssh_tag, p_ssh_key_version,
    p_ssh_key_label, p_n8n_ciphertext, p_n8n_iv, p_n8n_tag, p_n8n_key_version,
    job.payload ->> 'requested_by', job.activation_request_id, job.payload ->> 'notes'
  )
  RETURNING * INTO instance;
  UPDATE public.provisioning_queue SET vps_instance_id = instance.id WHERE id = p_job_id;
  RETURN instance;
END
$$;
REVOKE ALL ON FUNCTION public.prepare_provisioned_vps(
  uuid, integer, text, uuid, text, text, text, text, integer, text, text, text, text, integer
) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.prepare_provisioned_vps(
  uuid, integer, text, uuid, text, text, text, text, integer, text, text, text, text, integer
) TO service_role;

-- Mark that a purchase request is about to be sent (committed first), or that it surely
-- did not happen (a refusal before anything was bought).
CREATE FUNCTION public.mark_provisioning_purchase(
  p_job_id uuid, p_lease integer, p_worker_id text, p_started boolean
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  PERFORM public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  UPDATE public.provisioning_queue
  SET purchase_started_at = CASE WHEN p_started THEN now() END
  WHERE id = p_job_id;
END
$$;
REVOKE ALL ON FUNCTION public.mark_provisioning_purchase(uuid, integer, text, boolean)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.mark_provisioning_purchase(uuid, integer, text, boolean)
  TO service_role;

-- The VM Hostinger created (from the purchase reply, or found again by its hostname).
CREATE FUNCTION public.record_provisioned_vm(
  p_job_id uuid, p_lease integer, p_worker_id text, p_virtual_machine_id text, p_order jsonb
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
BEGIN
  job := public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  UPDATE public.vps_instances SET virtual_machine_id = p_virtual_machine_id
  WHERE id = job.vps_instance_id;
  UPDATE public.provisioning_queue
  SET result = coalesce(result, '{}') || jsonb_build_object(
        'virtual_machine_id', p_virtual_machine_id, 'order', p_order)
  WHERE id = p_job_id;
END
$$;
REVOKE ALL ON FUNCTION public.record_provisioned_vm(uuid, integer, text, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_provisioned_vm(uuid, integer, text, text, jsonb)
  TO service_role;

-- The VM runs: the VPS row becomes active and the job completes.
CREATE FUNCTION public.finish_provisioned_vps(
  p_job_id uuid, p_lease integer, p_worker_id text, p_ip_address text, p_n8n_instance_url text
)
RETURNS public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
  instance public.vps_instances;
BEGIN
  job := public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  UPDATE public.vps_instances
  SET status = 'active', ip_address = p_ip_address, n8n_instance_url = p_n8n_instance_url
  WHERE id = job.vps_instance_id
  RETURNING * INTO instance;
  RETURN public.complete_provisioning_job(p_job_id, p_lease, p_worker_id,
    coalesce(job.result, '{}') || jsonb_build_object(
      'vps_instance_id', instance.id, 'virtual_machine_id', instance.virtual_machine_id,
      'ip_address', p_ip_address));
END
$$;
REVOKE ALL ON FUNCTION public.finish_provisioned_vps(uuid, integer, text, text, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.finish_provisioned_vps(uuid, integer, text, text, text)
  TO service_role;

-- The VM failed at Hostinger: the VPS row says so (the job's failure is reported apart).
CREATE FUNCTION public.mark_provisioned_vps_error(p_job_id uuid, p_lease integer, p_worker_id text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  job public.provisioning_queue;
BEGIN
  job := public.held_provisioning_job(p_job_id, p_lease, p_worker_id);
  UPDATE public.vps_instances SET status = 'error' WHERE id = job.vps_instance_id;
END
$$;
REVOKE ALL ON FUNCTION public.mark_provisioned_vps_error(uuid, integer, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.mark_provisioned_vps_error(uuid, integer, text) TO service_role;
