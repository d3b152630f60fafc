-- Losing payment removes access, with grace.
--
-- A subscription entitles while it is active or trialing, and while it is past due for
-- less than the grace period (registry billing/grace_days, default 7 days); a full refund
-- or a dispute of a subscription payment takes that away until a later payment. Whenever
-- billing changes, `reconcile_billing_access()` pauses a client's live activations
-- (n8n_mappings pending, provisioning or active) beyond what `has_entitlement()` and
-- `entitlement_limits()` still allow — oldest first keep their place — and resumes the
-- ones billing paused once they are allowed again. Pausing marks the mapping `paused`
-- (metadata.paused_by = 'billing') and queues a `pause_workflows` job; resuming queues
-- `resume_workflows`. The grace period ending is nobody's event: `apply_billing_grace()`
-- (run by queue-processor before its jobs) looks for it.

-- The grace period of an unpaid subscription.
CREATE FUNCTION public.billing_grace()
RETURNS interval
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT make_interval(days => public.registry_int('billing', 'grace_days', 7))
$$;
REVOKE ALL ON FUNCTION public.billing_grace() FROM PUBLIC, anon, authenticated, service_role;

-- Whether a client's subscription entitles right now.
CREATE FUNCTION public.billing_in_good_standing(p_billing public.client_billing)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT (p_billing.status IN ('active', 'trialing')
          OR (p_billing.status = 'past_due'
              AND p_billing.past_due_since > now() - public.billing_grace()))
     AND (p_billing.subscription_end IS NULL
          OR p_billing.subscription_end > now() - public.billing_grace())
     AND (p_billing.past_due_since IS NULL
          OR p_billing.past_due_since > now() - public.billing_grace())
     AND (p_billing.payment_reversed_at IS NULL
          OR p_billing.payment_reversed_at < coalesce(p_billing.last_payment_at, '-infinity'))
$$;
REVOKE ALL ON FUNCTION public.billing_in_good_standing(public.client_billing)
  FROM PUBLIC, anon, authenticated, service_role;

-- The strongest tier a user holds right now: a one-time tier bought and not refunded or
-- disputed (never expires), or a subscription in good standing to a tier's price (source
-- of truth for prices: the registry).
CREATE OR REPLACE FUNCTION public.current_tier(p_user_id uuid)
RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT t.tier
  FROM public.tier_entitlements t
  WHERE EXISTS (
          SELECT 1 FROM public.settled_purchases p
          WHERE p.user_id = p_user_id AND p.item_type = 'tier' AND p.tier = t.tier
            AND NOT t.expires)
     OR EXISTS (
          SELECT 1
          FROM public.client_billing b
          JOIN public.system_registry r
            ON r.namespace = 'stripe' AND r.key = 'price_' || t.tier
          WHERE b.user_id = p_user_id
            AND b.current_price_id = r.value
            AND public.billing_in_good_standing(b))
  ORDER BY t.rank DESC
  LIMIT 1
$$;
REVOKE ALL ON FUNCTION public.current_tier(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.current_tier(uuid) TO service_role;

-- Whether the item a mapping runs is still the user's to use.
CREATE FUNCTION public.billing_mapping_entitled(p_mapping public.n8n_mappings)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT CASE
    WHEN p_mapping.automation_id IS NOT NULL
      THEN public.has_entitlement(p_mapping.user_id, 'agent', p_mapping.automation_id)
    WHEN p_mapping.bundle_id IS NOT NULL
      THEN public.has_entitlement(p_mapping.user_id, 'bundle', p_mapping.bundle_id)
    ELSE true  -- no catalog item: only the tier's number of activations applies
  END
$$;
REVOKE ALL ON FUNCTION public.billing_mapping_entitled(public.n8n_mappings)
  FROM PUBLIC, anon, authenticated, service_role;

-- Pause what a user is no longer entitled to run, resume what billing paused and is
-- allowed again; tells the client, and the operators when something was paused. Callers
-- hold the user's billing lock. Needs the service role's claims (the entitlement checks
-- ask who is asking).
CREATE FUNCTION public.reconcile_billing_access(p_user_id uuid, p_reason text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  allowed integer;
  kept integer := 0;
  mapping public.n8n_mappings;
  paused uuid[] := '{}';
  restored uuid[] := '{}';
BEGIN
  IF p_user_id IS NULL OR public.user_is_admin(p_user_id) THEN
    RETURN jsonb_build_object('paused', 0, 'restored', 0);
  END IF;
  SELECT l.max_live_activations INTO allowed FROM public.entitlement_limits(p_user_id) AS l;

  -- Live activations keep their place, oldest first, while entitlement and limit allow.
  FOR mapping IN
    SELECT * FROM public.n8n_mappings
    WHERE user_id = p_user_id AND status IN ('pending', 'provisioning', 'active')
    ORDER BY created_at, id
    FOR UPDATE
  LOOP
    IF public.billing_mapping_entitled(mapping) AND (allowed IS NULL OR kept < allowed) THEN
      kept := kept + 1;
      CONTINUE;
    END IF;
    UPDATE public.n8n_mappings
    SET status = 'paused',
        metadata = metadata || jsonb_build_object(
          'paused_by', 'billing', 'paused_at', now(), 'paused_reason', p_reason,
          'paused_from', mapping.status)
    WHERE id = mapping.id;
    PERFORM public.enqueue_provisioning(
      p_user_id, 'pause_workflows',
      jsonb_build_object('mapping_id', mapping.id, 'reason', p_reason,
                         'n8n_workflow_ids', to_jsonb(mapping.n8n_workflow_ids)),
      mapping.activation_request_id);
    paused := paused || mapping.id;
  END LOOP;

  -- Then what billing paused comes back, oldest first, into the room that is left.
  FOR mapping IN
    SELECT * FROM public.n8n_mappings
    WHERE user_id = p_user_id AND status = 'paused' AND metadata ->> 'paused_by' = 'billing'
      AND NOT (id = ANY (paused))
    ORDER BY created_at, id
    FOR UPDATE
  LOOP
    IF NOT public.billing_mapping_entitled(mapping) OR (allowed IS NOT NULL AND kept >= allowed) THEN
      CONTINUE;
    END IF;
    kept := kept + 1;
    UPDATE public.n8n_mappings
    SET status = coalesce(mapping.metadata ->> 'paused_from', 'active'),
        metadata = (metadata - 'paused_by' - 'paused_at' - 'paused_reason' - 'paused_from')
          || jsonb_build_object('resumed_at', now(), 'resumed_reason', p_reason)
    WHERE id = mapping.id;
    PERFORM public.enqueue_provisioning(
      p_user_id, 'resume_workflows',
      jsonb_build_object('mapping_id', mapping.id, 'reason', p_reason,
                         'n8n_workflow_ids', to_jsonb(mapping.n8n_workflow_ids)),
      mapping.activation_request_id);
    restored := restored || mapping.id;
  END LOOP;

  IF cardinality(paused) > 0 THEN
    INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
    VALUES (
      'generic',
      format('BILLING_ACCESS_PAUSED: %s activation(s) of user %s', cardinality(paused),
             left(p_user_id::text, 8)),
      format('Payment was lost (%s): %s live activation(s) beyond what the client is still '
             'entitled to were paused; pause_workflows jobs are queued.',
             p_reason, cardinality(paused)),
      'warning',
      jsonb_build_object('kind', 'billing_access_paused', 'user_id', p_user_id,
                         'reason', p_reason, 'mapping_ids', to_jsonb(paused)));
    INSERT INTO public.client_notifications (user_id, type, title, body, severity, metadata)
    VALUES (
      p_user_id, 'generic', 'Automations paused',
      format('%s of your automations were paused because a payment was not received. '
             'Paying again restores them.', cardinality(paused)),
      'warning',
      jsonb_build_object('kind', 'billing_access_paused', 'reason', p_reason,
                         'mapping_ids', to_jsonb(paused)));
  END IF;
  IF cardinality(restored) > 0 THEN
    INSERT INTO public.client_notifications (user_id, type, title, body, severity, metadata)
    VALUES (
      p_user_id, 'generic', 'Automations restored',
      format('%s of your paused automations are running again.', cardinality(restored)),
      'success',
      jsonb_build_object('kind', 'billing_access_restored', 'reason', p_reason,
                         'mapping_ids', to_jsonb(restored)));
  END IF;
  RETURN jsonb_build_object('paused', cardinality(paused), 'restored', cardinality(restored));
END
$$;
REVOKE ALL ON FUNCTION public.reconcile_billing_access(uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;

-- One billing lock per key (a customer, a payment, a user, …), taken in a fixed order and
-- held to the end of the transaction: events about the same things apply one at a time.
CREATE FUNCTION public.billing_lock(p_keys text[])
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  lock_key text;
BEGIN
  FOR lock_key IN
    SELECT DISTINCT k FROM unnest(p_keys) AS k WHERE k IS NOT NULL ORDER BY k
  LOOP
    PERFORM pg_catalog.pg_advisory_xact_lock(
      pg_catalog.hashtextextended('aerelion.billing:' || lock_key, 0));
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION public.billing_lock(text[]) FROM PUBLIC, anon, authenticated, service_role;

-- The grace period runs out without an event: pause the live activations of clients whose
-- subscription has been unpaid (or ended without renewal) for longer than the grace
-- period. Run it regularly (queue-processor calls it before running jobs); returns how
-- many clients it looked at and how many activations it paused.
CREATE FUNCTION public.apply_billing_grace()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  lapsed uuid;
  report jsonb;
  clients integer := 0;
  paused integer := 0;
BEGIN
  FOR lapsed IN
    SELECT b.user_id FROM public.client_billing b
    WHERE (b.past_due_since <= now() - public.billing_grace()
           OR (b.status IN ('active', 'trialing', 'past_due')
               AND b.subscription_end <= now() - public.billing_grace()))
      AND EXISTS (
        SELECT 1 FROM public.n8n_mappings m
        WHERE m.user_id = b.user_id AND m.status IN ('pending', 'provisioning', 'active'))
    ORDER BY b.user_id
  LOOP
    PERFORM public.billing_lock(ARRAY['user:' || lapsed]);
    report := public.reconcile_billing_access(lapsed, 'grace_expired');
    clients := clients + 1;
    paused := paused + (report ->> 'paused')::integer;
  END LOOP;
  RETURN jsonb_build_object('clients', clients, 'paused', paused);
END
$$;
REVOKE ALL ON FUNCTION public.apply_billing_grace() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.apply_billing_grace() TO service_role;
