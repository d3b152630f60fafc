-- Workers claim only the actions they can run: a job whose handler ships later (pausing
-- and resuming a client's workflows arrives with the n8n lifecycle) waits, visible, instead
-- of failing. The three-argument claim stays for workers already running.

ALTER TABLE public.provisioning_queue DROP CONSTRAINT provisioning_queue_action_check;
ALTER TABLE public.provisioning_queue ADD CONSTRAINT provisioning_queue_action_check
  CHECK (action IN (
    'provision_vps', 'deploy_agents', 'activate_workflows', 'pause_workflows', 'resume_workflows'
  ));

CREATE FUNCTION public.claim_provisioning_jobs(
  p_limit integer, p_worker_id text, p_lease_seconds integer, p_actions text[]
)
RETURNS SETOF public.provisioning_queue
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_worker_id IS NULL OR p_lease_seconds IS NULL
     OR p_lease_seconds < 1 OR p_actions IS NULL THEN
    RAISE EXCEPTION 'claims need a limit, a worker id, a lease and actions' USING ERRCODE = '22023';
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
      AND action = ANY (p_actions)
    ORDER BY scheduled_at, id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  ) AS due
  WHERE q.id = due.id
  RETURNING q.*;
END
$$;
REVOKE ALL ON FUNCTION public.claim_provisioning_jobs(integer, text, integer, text[])
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.claim_provisioning_jobs(integer, text, integer, text[])
  TO service_role;
