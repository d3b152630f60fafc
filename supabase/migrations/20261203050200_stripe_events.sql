-- Stripe events applied, one SQL function per concern, and the checks behind checkout.
--
-- `receive_stripe_event(endpoint, event)` stores a verified event once per endpoint and,
-- in the same transaction, applies it:
--
--   library  checkout.session.completed (payment mode), checkout.session.async_payment_
--            succeeded|failed  → apply_one_time_checkout: purchases (catalog items and the
--            one-time tiers) and the item's installation request
--   portal   checkout.session.completed (subscription mode) → apply_subscription_checkout
--            customer.subscription.created|updated|deleted → apply_stripe_subscription
--            invoice.paid, invoice.payment_failed          → apply_stripe_invoice
--            charge.refunded, charge.dispute.created       → apply_stripe_reversal
--
-- A duplicate changes nothing; anything else is stored and answered as ignored. Users are
-- matched by the ids AERELION put into Stripe (client_reference_id, metadata.user_id) and
-- by the stored customer id, never by email. Events about the same customer, payment or
-- user apply one at a time (billing_lock), and every fact merges whatever the order.
-- Written for Stripe API version 2026-10-28.endive (current_period_end on subscription
-- items, the subscription of an invoice under parent.subscription_details).

-- -- Reading Stripe objects

-- A Stripe timestamp (seconds since the epoch) as timestamptz, NULL if absent.
CREATE FUNCTION public.stripe_time(p_value jsonb)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
  SELECT CASE WHEN jsonb_typeof(p_value) = 'number'
              THEN pg_catalog.to_timestamp((p_value #>> '{}')::double precision) END
$$;
REVOKE ALL ON FUNCTION public.stripe_time(jsonb) FROM PUBLIC, anon, authenticated, service_role;

-- The id of an expandable field: the string itself, or the id of the expanded object.
CREATE FUNCTION public.stripe_id(p_value jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT CASE jsonb_typeof(p_value)
    WHEN 'string' THEN p_value #>> '{}'
    WHEN 'object' THEN p_value ->> 'id'
  END
$$;
REVOKE ALL ON FUNCTION public.stripe_id(jsonb) FROM PUBLIC, anon, authenticated, service_role;

-- How strong a purchase status is: a later event never weakens it (a refund stays a
-- refund when the completion arrives after it).
CREATE FUNCTION public.purchase_status_rank(p_status text)
RETURNS integer
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT CASE p_status
    WHEN 'pending' THEN 0 WHEN 'failed' THEN 1 WHEN 'completed' THEN 2 WHEN 'paid' THEN 2
    WHEN 'refunded' THEN 3 WHEN 'disputed' THEN 4 ELSE -1 END
$$;
REVOKE ALL ON FUNCTION public.purchase_status_rank(text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION public.purchase_status_merge(p_held text, p_new text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT CASE WHEN p_new IS NOT NULL
                   AND public.purchase_status_rank(p_new) > public.purchase_status_rank(p_held)
              THEN p_new ELSE coalesce(p_held, p_new) END
$$;
REVOKE ALL ON FUNCTION public.purchase_status_merge(text, text)
  FROM PUBLIC, anon, authenticated, service_role;

-- -- Who an object belongs to

-- The user named by our own reference (client_reference_id or metadata.user_id) when it is
-- a real user, else the owner of the stored customer id; never guessed from an email.
CREATE FUNCTION public.billing_user_for(p_reference text, p_customer text)
RETURNS uuid
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  matched uuid;
BEGIN
  IF p_reference ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    SELECT id INTO matched FROM auth.users WHERE id = p_reference::uuid;
    IF matched IS NOT NULL THEN
      RETURN matched;
    END IF;
  END IF;
  IF p_customer IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT user_id INTO matched FROM public.client_billing WHERE stripe_customer_id = p_customer;
  IF matched IS NOT NULL THEN
    RETURN matched;
  END IF;
  SELECT user_id INTO matched FROM public.billing_subscriptions
  WHERE customer_id = p_customer AND user_id IS NOT NULL
  ORDER BY created_at, id
  LIMIT 1;
  RETURN matched;
END
$$;
REVOKE ALL ON FUNCTION public.billing_user_for(text, text)
  FROM PUBLIC, anon, authenticated, service_role;

-- Remember a user's Stripe customer: the first one stays, and a customer already stored
-- for someone else is never moved (false). Subscriptions of that customer that nobody
-- claimed yet become the user's.
CREATE FUNCTION public.link_stripe_customer(p_user_id uuid, p_customer_id text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF p_user_id IS NULL OR p_customer_id IS NULL THEN
    RETURN false;
  END IF;
  IF EXISTS (
    SELECT 1 FROM public.client_billing
    WHERE stripe_customer_id = p_customer_id AND user_id <> p_user_id
  ) THEN
    RETURN false;
  END IF;
  INSERT INTO public.client_billing AS b (user_id, stripe_customer_id)
  VALUES (p_user_id, p_customer_id)
  ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id
    WHERE b.stripe_customer_id IS NULL;
  UPDATE public.billing_subscriptions SET user_id = p_user_id
  WHERE customer_id = p_customer_id AND user_id IS NULL;
  RETURN true;
END
$$;
REVOKE ALL ON FUNCTION public.link_stripe_customer(uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;

-- Derive a user's client_billing row from the facts: the current subscription (live ones
-- first, then the higher tier, then the newest), when its oldest unpaid invoice first
-- failed, the newest payment and the newest reversal of a subscription payment.
CREATE FUNCTION public.refresh_client_billing(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  customers text[];
  held public.billing_subscriptions;
  paid timestamptz;
  reversed timestamptz;
  overdue timestamptz;
BEGIN
  IF p_user_id IS NULL THEN
    RETURN;
  END IF;
  SELECT array_agg(DISTINCT known.customer) INTO customers FROM (
    SELECT stripe_customer_id AS customer FROM public.client_billing
    WHERE user_id = p_user_id AND stripe_customer_id IS NOT NULL
    UNION
    SELECT customer_id FROM public.billing_subscriptions WHERE user_id = p_user_id
  ) AS known;
  SELECT s.* INTO held
  FROM public.billing_subscriptions s
  LEFT JOIN public.tier_entitlements t ON EXISTS (
    SELECT 1 FROM public.system_registry r
    WHERE r.namespace = 'stripe' AND r.key = 'price_' || t.tier AND r.value = s.price_id)
  WHERE s.user_id = p_user_id
  ORDER BY CASE
             WHEN s.status IN ('active', 'trialing') THEN 4
             WHEN s.status IN ('past_due', 'unpaid') THEN 3
             WHEN s.status = 'unknown' THEN 2
             WHEN s.status IN ('canceled', 'incomplete_expired') THEN 0
             ELSE 1
           END DESC,
           t.rank DESC NULLS LAST, s.stripe_created_at DESC NULLS LAST, s.id
  LIMIT 1;
  IF held.id IS NULL AND customers IS NULL THEN
    RETURN;
  END IF;
  SELECT max(i.paid_at) INTO paid FROM public.billing_invoices i
  WHERE i.customer_id = ANY (customers);
  SELECT max(r.occurred_at) INTO reversed FROM public.billing_reversals r
  WHERE r.customer_id = ANY (customers)
    AND NOT EXISTS (
      SELECT 1 FROM public.purchases p WHERE p.stripe_payment_intent = r.payment_intent);
  IF held.id IS NOT NULL THEN
    SELECT min(i.first_failed_at) INTO overdue FROM public.billing_invoices i
    WHERE i.subscription_id = held.id AND i.paid_at IS NULL
      AND i.first_failed_at > coalesce(
        (SELECT max(x.paid_at) FROM public.billing_invoices x WHERE x.subscription_id = held.id),
        '-infinity');
    -- Past due, but everything that failed is paid, and paid after Stripe said so: paid up
    -- (Stripe's own update saying so may still be on its way).
    IF held.status IN ('past_due', 'unpaid') AND overdue IS NULL AND EXISTS (
      SELECT 1 FROM public.billing_invoices x
      WHERE x.subscription_id = held.id AND x.paid_at > held.snapshot_at
    ) THEN
      held.status := 'active';
    END IF;
  END IF;
  INSERT INTO public.client_billing AS b (
    user_id, subscription_id, status, current_price_id, current_product_id, subscription_end,
    past_due_since, last_payment_at, payment_reversed_at)
  VALUES (
    p_user_id, held.id,
    CASE
      WHEN held.status IN ('active', 'trialing') THEN held.status
      WHEN held.status IN ('past_due', 'unpaid') THEN 'past_due'
      WHEN held.status IN ('canceled', 'incomplete_expired') THEN 'canceled'
      ELSE 'inactive'
    END,
    held.price_id, held.product_id, held.current_period_end, overdue, paid, reversed)
  ON CONFLICT (user_id) DO UPDATE SET
    subscription_id = EXCLUDED.subscription_id,
    status = EXCLUDED.status,
    current_price_id = EXCLUDED.current_price_id,
    current_product_id = EXCLUDED.current_product_id,
    subscription_end = EXCLUDED.subscription_end,
    past_due_since = EXCLUDED.past_due_since,
    last_payment_at = EXCLUDED.last_payment_at,
    payment_reversed_at = EXCLUDED.payment_reversed_at
  WHERE (b.subscription_id, b.status, b.current_price_id, b.current_product_id,
         b.subscription_end, b.past_due_since, b.last_payment_at, b.payment_reversed_at)
        IS DISTINCT FROM
        (EXCLUDED.subscription_id, EXCLUDED.status, EXCLUDED.current_price_id,
         EXCLUDED.current_product_id, EXCLUDED.subscription_end, EXCLUDED.past_due_since,
         EXCLUDED.last_payment_at, EXCLUDED.payment_reversed_at);
END
$$;
REVOKE ALL ON FUNCTION public.refresh_client_billing(uuid)
  FROM PUBLIC, anon, authenticated, service_role;

-- One in-app notification for a client (types client_notifications accepts).
CREATE FUNCTION public.billing_notify(
  p_user_id uuid, p_type text, p_severity text, p_title text, p_body text,
  p_metadata jsonb DEFAULT '{}'
)
RETURNS void
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
  INSERT INTO public.client_notifications (user_id, type, severity, title, body, metadata)
  SELECT p_user_id, p_type, p_severity, left(p_title, 200), left(p_body, 4000),
         coalesce(p_metadata, '{}')
  WHERE p_user_id IS NOT NULL
$$;
REVOKE ALL ON FUNCTION public.billing_notify(uuid, text, text, text, text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;

-- An amount in minor units as text ("99.00 USD").
CREATE FUNCTION public.billing_amount(p_cents integer, p_currency text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
  SELECT to_char(coalesce(p_cents, 0) / 100.0, 'FM999999999990.00') || ' '
         || upper(coalesce(p_currency, 'usd'))
$$;
REVOKE ALL ON FUNCTION public.billing_amount(integer, text)
  FROM PUBLIC, anon, authenticated, service_role;

-- -- The concerns

-- A one-time Checkout Session (mode `payment`) that AERELION started: a catalog item
-- (metadata purpose `library`, item_type, item_id) or a one-time tier (purpose `tier`,
-- tier). `p_kind`: `completed` (checkout.session.completed, or the success page reading the
-- session back: its payment_status decides), `succeeded` or `failed` (the asynchronous
-- outcome of a delayed payment method). A paid catalog item gets its installation request.
CREATE FUNCTION public.apply_one_time_checkout(p_session jsonb, p_at timestamptz, p_kind text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  session_id text := p_session ->> 'id';
  meta jsonb := coalesce(p_session -> 'metadata', '{}');
  customer text := public.stripe_id(p_session -> 'customer');
  intent text := public.stripe_id(p_session -> 'payment_intent');
  purpose text := meta ->> 'purpose';
  buyer uuid;
  item_kind text;
  item uuid;
  held_tier text;
  item_name text;
  paid_now boolean;
  reported text;
  reversal text;
  buyer_email text;
  prior public.purchases;
  latest public.purchases;
BEGIN
  IF session_id IS NULL OR session_id !~ '^cs_' OR p_kind NOT IN ('completed', 'succeeded', 'failed') THEN
    RAISE EXCEPTION 'not a checkout session' USING ERRCODE = '22023';
  END IF;
  IF p_session ->> 'mode' IS DISTINCT FROM 'payment' THEN
    RETURN 'ignored: not a one-time payment';
  END IF;
  IF purpose = 'tier' THEN
    held_tier := meta ->> 'tier';
    SELECT name INTO item_name FROM public.tier_entitlements
    WHERE tier = held_tier AND mode = 'payment';
    IF item_name IS NULL THEN
      RETURN 'ignored: no one-time tier in the metadata';
    END IF;
    item_kind := 'tier';
  ELSIF purpose = 'library' THEN
    item_kind := meta ->> 'item_type';
    IF item_kind IS NULL OR item_kind NOT IN ('agent', 'bundle')
       OR (meta ->> 'item_id') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
      RETURN 'ignored: no catalog item in the metadata';
    END IF;
    item := (meta ->> 'item_id')::uuid;
    IF item_kind = 'agent' THEN
      SELECT name INTO item_name FROM public.automation_agents WHERE id = item;
    ELSE
      SELECT name INTO item_name FROM public.automation_bundles WHERE id = item;
    END IF;
  ELSE
    RETURN 'ignored: not started by AERELION';
  END IF;

  buyer := public.billing_user_for(
    coalesce(p_session ->> 'client_reference_id', meta ->> 'user_id'), customer);
  PERFORM public.billing_lock(
    ARRAY['customer:' || customer, 'intent:' || intent, 'session:' || session_id]);
  PERFORM public.billing_lock(ARRAY['user:' || buyer]);

  paid_now := p_kind = 'succeeded'
    OR (p_kind = 'completed' AND p_session ->> 'payment_status' IN ('paid', 'no_payment_required'));
  reported := CASE WHEN p_kind = 'failed' THEN 'failed'
                   WHEN paid_now THEN 'completed'
                   ELSE 'pending' END;
  -- A refund or dispute that arrived before the completion still counts.
  SELECT CASE WHEN bool_or(kind = 'dispute') THEN 'disputed' ELSE 'refunded' END INTO reversal
  FROM public.billing_reversals WHERE intent IS NOT NULL AND payment_intent = intent
  HAVING count(*) > 0;
  reported := public.purchase_status_merge(reported, reversal);

  SELECT u.email INTO buyer_email FROM auth.users u WHERE u.id = buyer;
  SELECT * INTO prior FROM public.purchases WHERE stripe_session_id = session_id FOR UPDATE;
  INSERT INTO public.purchases AS p (
    email, item_type, item_id, tier, stripe_session_id, amount_cents, status,
    stripe_payment_intent, user_id)
  VALUES (
    coalesce(buyer_email, p_session -> 'customer_details' ->> 'email',
             p_session ->> 'customer_email', 'unknown'),
    item_kind, item, held_tier, session_id,
    greatest(coalesce((p_session ->> 'amount_total')::integer, 0), 0),
    reported, intent, buyer)
  ON CONFLICT (stripe_session_id) DO UPDATE SET
    status = public.purchase_status_merge(p.status, EXCLUDED.status),
    stripe_payment_intent = coalesce(p.stripe_payment_intent, EXCLUDED.stripe_payment_intent),
    user_id = coalesce(p.user_id, EXCLUDED.user_id),
    amount_cents = CASE WHEN p.amount_cents = 0 THEN EXCLUDED.amount_cents ELSE p.amount_cents END
  RETURNING * INTO latest;

  IF paid_now AND item_kind IN ('agent', 'bundle') AND latest.user_id IS NOT NULL
     AND item_name IS NOT NULL AND buyer_email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' THEN
    INSERT INTO public.installation_requests (
      name, email, user_id, purchased_item, purchase_id, automation_id, bundle_id, status,
      customer_visible_status)
    VALUES (
      left(buyer_email, 200), buyer_email, latest.user_id, item_name, session_id,
      CASE WHEN item_kind = 'agent' THEN item END, CASE WHEN item_kind = 'bundle' THEN item END,
      CASE WHEN latest.status IN ('refunded', 'disputed') THEN 'cancelled' ELSE 'received' END,
      CASE WHEN latest.status IN ('refunded', 'disputed') THEN 'cancelled' ELSE 'received' END)
    ON CONFLICT DO NOTHING;
  END IF;

  IF buyer IS NOT NULL THEN
    PERFORM public.link_stripe_customer(buyer, customer);
    PERFORM public.refresh_client_billing(buyer);
    PERFORM public.reconcile_billing_access(buyer, 'purchase_' || latest.status);
    IF prior.status IS DISTINCT FROM latest.status AND latest.status = 'completed' THEN
      PERFORM public.billing_notify(buyer, 'generic', 'success', 'Purchase confirmed',
        format('%s is yours (%s).', item_name,
               public.billing_amount(latest.amount_cents, p_session ->> 'currency')),
        jsonb_build_object('kind', 'purchase_completed', 'purchase_id', latest.id,
                           'session_id', session_id));
    ELSIF prior.status IS DISTINCT FROM latest.status AND latest.status = 'failed' THEN
      PERFORM public.billing_notify(buyer, 'payment_failed', 'critical', 'Payment failed',
        format('Your payment for %s did not go through.', item_name),
        jsonb_build_object('kind', 'purchase_failed', 'purchase_id', latest.id,
                           'session_id', session_id));
    END IF;
  END IF;
  RETURN format('purchase %s', latest.status)
    || CASE WHEN buyer IS NULL THEN ' (no matching user)' ELSE '' END;
END
$$;
REVOKE ALL ON FUNCTION public.apply_one_time_checkout(jsonb, timestamptz, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.apply_one_time_checkout(jsonb, timestamptz, text) TO service_role;

-- A subscription Checkout Session completed: the buyer's customer and subscription are
-- theirs (the subscription's state comes with its own events).
CREATE FUNCTION public.apply_subscription_checkout(p_session jsonb, p_at timestamptz)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  session_id text := p_session ->> 'id';
  customer text := public.stripe_id(p_session -> 'customer');
  subscription text := public.stripe_id(p_session -> 'subscription');
  buyer uuid;
  known boolean;
BEGIN
  IF session_id IS NULL OR session_id !~ '^cs_' THEN
    RAISE EXCEPTION 'not a checkout session' USING ERRCODE = '22023';
  END IF;
  IF p_session ->> 'mode' IS DISTINCT FROM 'subscription' THEN
    RETURN 'ignored: not a subscription checkout';
  END IF;
  IF customer IS NULL OR subscription IS NULL THEN
    RETURN 'ignored: no customer or subscription';
  END IF;
  buyer := public.billing_user_for(
    coalesce(p_session ->> 'client_reference_id', p_session -> 'metadata' ->> 'user_id'), customer);
  PERFORM public.billing_lock(
    ARRAY['customer:' || customer, 'subscription:' || subscription]);
  PERFORM public.billing_lock(ARRAY['user:' || buyer]);
  IF buyer IS NULL THEN
    RETURN 'unmatched: no user for this checkout';
  END IF;
  IF NOT public.link_stripe_customer(buyer, customer) THEN
    RETURN 'refused: the customer belongs to another user';
  END IF;
  known := EXISTS (SELECT 1 FROM public.billing_subscriptions WHERE id = subscription);
  INSERT INTO public.billing_subscriptions AS s (id, user_id, customer_id)
  VALUES (subscription, buyer, customer)
  ON CONFLICT (id) DO UPDATE SET user_id = coalesce(s.user_id, EXCLUDED.user_id);
  PERFORM public.refresh_client_billing(buyer);
  PERFORM public.reconcile_billing_access(buyer, 'subscription_started');
  IF NOT known THEN
    PERFORM public.billing_notify(buyer, 'sub_active', 'success', 'Subscription started',
      'Thank you: your subscription is being set up.',
      jsonb_build_object('kind', 'subscription_started', 'subscription_id', subscription));
  END IF;
  RETURN 'subscription linked';
END
$$;
REVOKE ALL ON FUNCTION public.apply_subscription_checkout(jsonb, timestamptz)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.apply_subscription_checkout(jsonb, timestamptz) TO service_role;

-- A snapshot of a subscription. It replaces the stored one only when newer (a cancelled
-- subscription first, then the event's `created`, then its id), so an old event arriving
-- late never rolls the state back. `p_event_id` '' marks a snapshot read back from the API,
-- which every event supersedes.
CREATE FUNCTION public.apply_stripe_subscription(
  p_subscription jsonb, p_at timestamptz, p_event_id text, p_deleted boolean
)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  subscription text := p_subscription ->> 'id';
  customer text := public.stripe_id(p_subscription -> 'customer');
  state text := CASE WHEN p_deleted THEN 'canceled'
                     ELSE coalesce(p_subscription ->> 'status', 'unknown') END;
  first_item jsonb := p_subscription -> 'items' -> 'data' -> 0;
  period_end timestamptz;
  subscriber uuid;
  applied public.billing_subscriptions;
BEGIN
  IF subscription IS NULL OR subscription !~ '^sub_' OR customer IS NULL OR p_at IS NULL THEN
    RAISE EXCEPTION 'not a subscription' USING ERRCODE = '22023';
  END IF;
  IF state !~ '^[a-z_]{1,40}$' THEN
    state := 'unknown';
  END IF;
  SELECT max(public.stripe_time(i -> 'current_period_end')) INTO period_end
  FROM jsonb_array_elements(
    CASE WHEN jsonb_typeof(p_subscription -> 'items' -> 'data') = 'array'
         THEN p_subscription -> 'items' -> 'data' ELSE '[]' END) AS i;
  subscriber := public.billing_user_for(p_subscription -> 'metadata' ->> 'user_id', customer);
  PERFORM public.billing_lock(ARRAY['customer:' || customer, 'subscription:' || subscription]);
  PERFORM public.billing_lock(ARRAY['user:' || subscriber]);

  INSERT INTO public.billing_subscriptions AS s (
    id, user_id, customer_id, status, price_id, product_id, current_period_end,
    cancel_at_period_end, stripe_created_at, snapshot_at, snapshot_event)
  VALUES (
    subscription, subscriber, customer, state, first_item -> 'price' ->> 'id',
    public.stripe_id(first_item -> 'price' -> 'product'), period_end,
    coalesce((p_subscription ->> 'cancel_at_period_end')::boolean, false),
    public.stripe_time(p_subscription -> 'created'), p_at, coalesce(p_event_id, ''))
  ON CONFLICT (id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id,
    status = EXCLUDED.status,
    price_id = EXCLUDED.price_id,
    product_id = EXCLUDED.product_id,
    current_period_end = EXCLUDED.current_period_end,
    cancel_at_period_end = EXCLUDED.cancel_at_period_end,
    stripe_created_at = coalesce(EXCLUDED.stripe_created_at, s.stripe_created_at),
    snapshot_at = EXCLUDED.snapshot_at,
    snapshot_event = EXCLUDED.snapshot_event
  WHERE ROW(EXCLUDED.status IN ('canceled', 'incomplete_expired'), EXCLUDED.snapshot_at,
            EXCLUDED.snapshot_event)
      > ROW(s.status IN ('canceled', 'incomplete_expired'), s.snapshot_at, s.snapshot_event)
  RETURNING * INTO applied;

  -- Whose it is holds even when the snapshot itself was older than the stored one.
  IF subscriber IS NOT NULL THEN
    UPDATE public.billing_subscriptions SET user_id = subscriber
    WHERE id = subscription AND user_id IS NULL;
    PERFORM public.link_stripe_customer(subscriber, customer);
  ELSE
    SELECT user_id INTO subscriber FROM public.billing_subscriptions WHERE id = subscription;
  END IF;
  IF subscriber IS NOT NULL THEN
    PERFORM public.refresh_client_billing(subscriber);
    PERFORM public.reconcile_billing_access(
      subscriber, CASE WHEN p_deleted THEN 'subscription_deleted' ELSE 'subscription_' || state END);
  END IF;
  IF applied.id IS NULL THEN
    RETURN 'stale: a newer snapshot is stored';
  END IF;
  IF p_deleted THEN
    PERFORM public.billing_notify(subscriber, 'canceled', 'warning', 'Subscription canceled',
      'Your subscription has ended.',
      jsonb_build_object('kind', 'subscription_deleted', 'subscription_id', subscription));
  END IF;
  RETURN format('subscription %s', state)
    || CASE WHEN subscriber IS NULL THEN ' (no matching user yet)' ELSE '' END;
END
$$;
REVOKE ALL ON FUNCTION public.apply_stripe_subscription(jsonb, timestamptz, text, boolean)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.apply_stripe_subscription(jsonb, timestamptz, text, boolean)
  TO service_role;

-- A subscription invoice paid (`p_paid`) or failed. Paid is final; the first failure is
-- kept, and starts the grace period until a payment comes after it.
CREATE FUNCTION public.apply_stripe_invoice(p_invoice jsonb, p_at timestamptz, p_paid boolean)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  invoice text := p_invoice ->> 'id';
  customer text := public.stripe_id(p_invoice -> 'customer');
  details jsonb := p_invoice -> 'parent' -> 'subscription_details';
  subscription text := public.stripe_id(p_invoice -> 'parent' -> 'subscription_details' -> 'subscription');
  subscriber uuid;
  prior public.billing_invoices;
  latest public.billing_invoices;
BEGIN
  IF invoice IS NULL OR invoice !~ '^in_' OR p_at IS NULL THEN
    RAISE EXCEPTION 'not an invoice' USING ERRCODE = '22023';
  END IF;
  IF subscription IS NULL OR customer IS NULL THEN
    RETURN 'ignored: not a subscription invoice';
  END IF;
  subscriber := public.billing_user_for(details -> 'metadata' ->> 'user_id', customer);
  PERFORM public.billing_lock(ARRAY['customer:' || customer, 'subscription:' || subscription]);
  PERFORM public.billing_lock(ARRAY['user:' || subscriber]);

  SELECT * INTO prior FROM public.billing_invoices WHERE id = invoice FOR UPDATE;
  INSERT INTO public.billing_invoices AS i (
    id, customer_id, subscription_id, paid_at, first_failed_at, amount_paid, currency)
  VALUES (
    invoice, customer, subscription, CASE WHEN p_paid THEN p_at END,
    CASE WHEN NOT p_paid THEN p_at END,
    greatest(coalesce((p_invoice ->> 'amount_paid')::integer, 0), 0), p_invoice ->> 'currency')
  ON CONFLICT (id) DO UPDATE SET
    paid_at = greatest(i.paid_at, EXCLUDED.paid_at),
    first_failed_at = least(i.first_failed_at, EXCLUDED.first_failed_at),
    amount_paid = greatest(i.amount_paid, EXCLUDED.amount_paid),
    currency = coalesce(i.currency, EXCLUDED.currency)
  RETURNING * INTO latest;
  -- The subscription is known from here on, even before its own events arrive.
  INSERT INTO public.billing_subscriptions AS s (id, user_id, customer_id)
  VALUES (subscription, subscriber, customer)
  ON CONFLICT (id) DO UPDATE SET user_id = coalesce(s.user_id, EXCLUDED.user_id);

  IF subscriber IS NOT NULL THEN
    PERFORM public.link_stripe_customer(subscriber, customer);
  ELSE
    SELECT user_id INTO subscriber FROM public.billing_subscriptions WHERE id = subscription;
  END IF;
  IF subscriber IS NOT NULL THEN
    PERFORM public.refresh_client_billing(subscriber);
    PERFORM public.reconcile_billing_access(
      subscriber, CASE WHEN p_paid THEN 'invoice_paid' ELSE 'invoice_payment_failed' END);
  END IF;
  IF p_paid AND prior.paid_at IS NULL THEN
    PERFORM public.billing_notify(subscriber, 'sub_active', 'success', 'Payment received',
      format('Thank you: %s received.',
             public.billing_amount(latest.amount_paid, latest.currency)),
      jsonb_build_object('kind', 'invoice_paid', 'invoice_id', invoice));
  ELSIF NOT p_paid AND latest.paid_at IS NULL AND prior.first_failed_at IS NULL THEN
    PERFORM public.billing_notify(subscriber, 'payment_failed', 'critical', 'Payment failed',
      format('We could not collect your subscription payment. Update your payment method '
             'within %s days to keep your automations running.',
             public.registry_int('billing', 'grace_days', 7)),
      jsonb_build_object('kind', 'invoice_payment_failed', 'invoice_id', invoice));
  END IF;
  RETURN CASE WHEN p_paid THEN 'invoice paid' ELSE 'invoice payment failed' END
    || CASE WHEN subscriber IS NULL THEN ' (no matching user yet)' ELSE '' END;
END
$$;
REVOKE ALL ON FUNCTION public.apply_stripe_invoice(jsonb, timestamptz, boolean)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.apply_stripe_invoice(jsonb, timestamptz, boolean) TO service_role;

-- Money going back: a charge fully refunded (`refund`, the Charge object) or disputed
-- (`dispute`, the Dispute object). A one-time purchase paid by it is refunded or disputed;
-- otherwise a refund of the customer's subscription payment takes the subscription's
-- access away until a later payment. A dispute always tells the operators.
CREATE FUNCTION public.apply_stripe_reversal(p_object jsonb, p_at timestamptz, p_kind text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  charge text;
  intent text;
  customer text;
  amount integer;
  holder uuid;
  buyers uuid[];
  affected uuid;
  purchases_hit integer := 0;
  reported text := CASE WHEN p_kind = 'dispute' THEN 'disputed' ELSE 'refunded' END;
BEGIN
  IF p_at IS NULL OR p_kind IS NULL OR p_kind NOT IN ('refund', 'dispute') THEN
    RAISE EXCEPTION 'not a refund or dispute' USING ERRCODE = '22023';
  END IF;
  IF p_kind = 'refund' THEN
    IF p_object ->> 'object' IS DISTINCT FROM 'charge' THEN
      RAISE EXCEPTION 'not a charge' USING ERRCODE = '22023';
    END IF;
    IF NOT coalesce((p_object ->> 'refunded')::boolean, false) THEN
      RETURN 'ignored: a partial refund';
    END IF;
    charge := p_object ->> 'id';
    customer := public.stripe_id(p_object -> 'customer');
    amount := coalesce((p_object ->> 'amount_refunded')::integer, 0);
  ELSE
    IF p_object ->> 'object' IS DISTINCT FROM 'dispute' THEN
      RAISE EXCEPTION 'not a dispute' USING ERRCODE = '22023';
    END IF;
    charge := public.stripe_id(p_object -> 'charge');
    amount := coalesce((p_object ->> 'amount')::integer, 0);
  END IF;
  intent := public.stripe_id(p_object -> 'payment_intent');
  IF charge IS NULL OR charge !~ '^(ch|py)_' THEN
    RAISE EXCEPTION 'no charge id' USING ERRCODE = '22023';
  END IF;
  PERFORM public.billing_lock(
    ARRAY['customer:' || customer, 'intent:' || intent, 'charge:' || charge]);
  SELECT array_agg(DISTINCT user_id) INTO buyers FROM public.purchases
  WHERE intent IS NOT NULL AND stripe_payment_intent = intent AND user_id IS NOT NULL;
  holder := public.billing_user_for(NULL, customer);
  PERFORM public.billing_lock(
    (SELECT array_agg('user:' || u) FROM unnest(coalesce(buyers, '{}') || holder) AS u));

  INSERT INTO public.billing_reversals AS r (
    charge_id, kind, payment_intent, customer_id, amount, occurred_at)
  VALUES (charge, p_kind, intent, customer, greatest(amount, 0), p_at)
  ON CONFLICT (charge_id, kind) DO UPDATE SET
    occurred_at = least(r.occurred_at, EXCLUDED.occurred_at),
    payment_intent = coalesce(r.payment_intent, EXCLUDED.payment_intent),
    customer_id = coalesce(r.customer_id, EXCLUDED.customer_id),
    amount = greatest(r.amount, EXCLUDED.amount);

  IF intent IS NOT NULL THEN
    UPDATE public.purchases SET status = public.purchase_status_merge(status, reported)
    WHERE stripe_payment_intent = intent;
    GET DIAGNOSTICS purchases_hit = ROW_COUNT;
    UPDATE public.installation_requests
    SET status = 'cancelled', customer_visible_status = 'cancelled', status_updated_at = now()
    WHERE status = 'received' AND purchase_id IN (
      SELECT stripe_session_id FROM public.purchases WHERE stripe_payment_intent = intent);
  END IF;

  FOR affected IN
    SELECT DISTINCT u FROM unnest(coalesce(buyers, '{}') || holder) AS u WHERE u IS NOT NULL
  LOOP
    PERFORM public.refresh_client_billing(affected);
    PERFORM public.reconcile_billing_access(affected, 'payment_' || reported);
    PERFORM public.billing_notify(affected, 'generic', 'warning',
      CASE WHEN p_kind = 'dispute' THEN 'Payment disputed' ELSE 'Payment refunded' END,
      format('A payment of %s was %s; what it paid for is no longer included.',
             public.billing_amount(amount, p_object ->> 'currency'), reported),
      jsonb_build_object('kind', 'payment_' || reported, 'charge_id', charge));
  END LOOP;

  IF p_kind = 'dispute' OR (purchases_hit = 0 AND holder IS NULL) THEN
    INSERT INTO public.admin_notifications (type, title, body, severity, metadata)
    VALUES (
      'generic',
      format('STRIPE_%s: charge %s', upper(p_kind), charge),
      format('A charge of %s was %s; %s purchase(s) matched%s.',
             public.billing_amount(amount, p_object ->> 'currency'), reported, purchases_hit,
             CASE WHEN purchases_hit = 0 AND holder IS NULL
                  THEN ', and no client: review it in Stripe' ELSE '' END),
      CASE WHEN p_kind = 'dispute' THEN 'critical' ELSE 'warning' END,
      jsonb_build_object('kind', 'payment_' || reported, 'charge_id', charge,
                         'payment_intent', intent, 'customer_id', customer,
                         'purchases', purchases_hit));
  END IF;
  RETURN format('charge %s: %s purchase(s)%s', reported, purchases_hit,
                CASE WHEN purchases_hit = 0 AND holder IS NOT NULL
                     THEN ', subscription payment' ELSE '' END);
END
$$;
REVOKE ALL ON FUNCTION public.apply_stripe_reversal(jsonb, timestamptz, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.apply_stripe_reversal(jsonb, timestamptz, text) TO service_role;

-- Store a verified event once for its endpoint (`library` or `portal`) and apply it in the
-- same transaction. A duplicate returns the stored outcome and changes nothing.
CREATE FUNCTION public.receive_stripe_event(p_endpoint text, p_event jsonb)
RETURNS TABLE (outcome text, duplicate boolean)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  event_id text := p_event ->> 'id';
  event_type text := p_event ->> 'type';
  event_at timestamptz := public.stripe_time(p_event -> 'created');
  body jsonb := p_event -> 'data' -> 'object';
  result text;
BEGIN
  IF p_endpoint IS NULL OR p_endpoint NOT IN ('library', 'portal') OR event_id IS NULL
     OR event_type IS NULL OR event_at IS NULL OR jsonb_typeof(body) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'not a Stripe event for a known endpoint' USING ERRCODE = '22023';
  END IF;
  INSERT INTO public.stripe_events (
    endpoint, id, type, object_id, created, livemode, api_version, payload)
  VALUES (
    p_endpoint, event_id, event_type, left(body ->> 'id', 255), event_at,
    coalesce((p_event ->> 'livemode')::boolean, false), p_event ->> 'api_version', p_event)
  ON CONFLICT ON CONSTRAINT stripe_events_pkey DO NOTHING;
  IF NOT FOUND THEN
    RETURN QUERY
      SELECT e.outcome, true FROM public.stripe_events e
      WHERE e.endpoint = p_endpoint AND e.id = event_id;
    RETURN;
  END IF;

  IF p_endpoint = 'library' THEN
    result := CASE event_type
      WHEN 'checkout.session.completed'
        THEN public.apply_one_time_checkout(body, event_at, 'completed')
      WHEN 'checkout.session.async_payment_succeeded'
        THEN public.apply_one_time_checkout(body, event_at, 'succeeded')
      WHEN 'checkout.session.async_payment_failed'
        THEN public.apply_one_time_checkout(body, event_at, 'failed')
      ELSE 'ignored: not handled by the library endpoint'
    END;
  ELSE
    result := CASE event_type
      WHEN 'checkout.session.completed'
        THEN public.apply_subscription_checkout(body, event_at)
      WHEN 'customer.subscription.created'
        THEN public.apply_stripe_subscription(body, event_at, event_id, false)
      WHEN 'customer.subscription.updated'
        THEN public.apply_stripe_subscription(body, event_at, event_id, false)
      WHEN 'customer.subscription.deleted'
        THEN public.apply_stripe_subscription(body, event_at, event_id, true)
      WHEN 'invoice.paid' THEN public.apply_stripe_invoice(body, event_at, true)
      WHEN 'invoice.payment_failed' THEN public.apply_stripe_invoice(body, event_at, false)
      WHEN 'charge.refunded' THEN public.apply_stripe_reversal(body, event_at, 'refund')
      WHEN 'charge.dispute.created' THEN public.apply_stripe_reversal(body, event_at, 'dispute')
      ELSE 'ignored: not handled by the portal endpoint'
    END;
  END IF;
  UPDATE public.stripe_events SET outcome = left(result, 500)
  WHERE stripe_events.endpoint = p_endpoint AND stripe_events.id = event_id;
  RETURN QUERY SELECT result, false;
END
$$;
REVOKE ALL ON FUNCTION public.receive_stripe_event(text, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.receive_stripe_event(text, jsonb) TO service_role;

-- -- Checkout, the portal and the success page

-- The signed-in caller (refuses everyone else).
CREATE FUNCTION public.billing_caller()
RETURNS uuid
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'authenticated' OR auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to manage billing' USING ERRCODE = '42501';
  END IF;
  RETURN auth.uid();
END
$$;
REVOKE ALL ON FUNCTION public.billing_caller() FROM PUBLIC, anon, authenticated, service_role;

-- Before a tier's Checkout Session: the price must be a tier's price in the registry
-- (`p_mode`, if given, must be that tier's), a one-time tier is bought once, a second
-- subscription is refused (plans change in the billing portal), and the caller's rate
-- limit. Returns the tier, the caller's stored customer and the app's domain.
CREATE FUNCTION public.prepare_tier_checkout(p_price_id text, p_mode text DEFAULT NULL)
RETURNS TABLE (tier text, mode text, price_id text, customer_id text, domain text)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  caller uuid := public.billing_caller();
  chosen public.tier_entitlements;
BEGIN
  SELECT t.* INTO chosen
  FROM public.tier_entitlements t
  JOIN public.system_registry r ON r.namespace = 'stripe' AND r.key = 'price_' || t.tier
  WHERE r.value = p_price_id;
  IF chosen.tier IS NULL THEN
    RAISE EXCEPTION 'unknown price' USING ERRCODE = '22023', HINT = 'use the price id of a tier';
  END IF;
  IF p_mode IS NOT NULL AND p_mode IS DISTINCT FROM chosen.mode THEN
    RAISE EXCEPTION '% is bought in % mode', chosen.name, chosen.mode USING ERRCODE = '22023';
  END IF;
  IF chosen.mode = 'payment' AND EXISTS (
    SELECT 1 FROM public.settled_purchases p
    WHERE p.user_id = caller AND p.item_type = 'tier' AND p.tier = chosen.tier
  ) THEN
    RAISE EXCEPTION 'you already hold %', chosen.name USING ERRCODE = 'PT409';
  END IF;
  IF chosen.mode = 'subscription' AND EXISTS (
    SELECT 1 FROM public.client_billing b
    WHERE b.user_id = caller AND b.subscription_id IS NOT NULL
      AND b.status IN ('active', 'trialing', 'past_due')
  ) THEN
    RAISE EXCEPTION 'you already have a subscription' USING ERRCODE = 'PT409',
      HINT = 'change plans in the billing portal';
  END IF;
  PERFORM public.enforce_rate_limit(
    'create-checkout',
    public.registry_int('billing', 'checkout_rate_max', 10),
    public.registry_int('billing', 'checkout_rate_window_s', 600));
  RETURN QUERY SELECT
    chosen.tier, chosen.mode, p_price_id,
    (SELECT b.stripe_customer_id FROM public.client_billing b WHERE b.user_id = caller),
    (SELECT r.value FROM public.system_registry r WHERE r.namespace = 'app' AND r.key = 'domain');
END
$$;
REVOKE ALL ON FUNCTION public.prepare_tier_checkout(text, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.prepare_tier_checkout(text, text) TO authenticated;

-- Before a catalog item's Checkout Session: a published item with a price, not already
-- the caller's (bought, or inside a bundle bought), and the caller's rate limit. The
-- price comes from the catalog.
CREATE FUNCTION public.prepare_library_checkout(p_item_type text, p_item_id uuid)
RETURNS TABLE (
  item_type text, item_id uuid, slug text, name text, description text, price_cents integer,
  customer_id text, domain text
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  caller uuid := public.billing_caller();
  found_slug text;
  found_name text;
  found_description text;
  found_price integer;
BEGIN
  IF p_item_type IS NULL OR p_item_type NOT IN ('agent', 'bundle') THEN
    RAISE EXCEPTION 'item type must be agent or bundle' USING ERRCODE = '22023';
  END IF;
  IF p_item_type = 'agent' THEN
    SELECT a.slug, a.name, coalesce(nullif(a.short_outcome, ''), a.description), a.price_cents
    INTO found_slug, found_name, found_description, found_price
    FROM public.automation_agents a WHERE a.id = p_item_id AND a.status = 'published';
  ELSE
    SELECT b.slug, b.name, coalesce(nullif(b.objective, ''), b.description), b.bundle_price_cents
    INTO found_slug, found_name, found_description, found_price
    FROM public.automation_bundles b WHERE b.id = p_item_id AND b.status = 'published';
  END IF;
  IF found_slug IS NULL THEN
    RAISE EXCEPTION 'no such published item' USING ERRCODE = 'PT404';
  END IF;
  IF found_price IS NULL OR found_price <= 0 THEN
    RAISE EXCEPTION 'this item is not for sale' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (
    SELECT 1 FROM public.settled_purchases p
    WHERE p.user_id = caller AND p.item_type = p_item_type AND p.item_id = p_item_id
  ) OR (p_item_type = 'agent' AND EXISTS (
    SELECT 1 FROM public.settled_purchases p
    JOIN public.automation_bundles b ON b.id = p.item_id
    WHERE p.user_id = caller AND p.item_type = 'bundle' AND p_item_id = ANY (b.included_agent_ids)
  )) THEN
    RAISE EXCEPTION 'you already own this item' USING ERRCODE = 'PT409';
  END IF;
  PERFORM public.enforce_rate_limit(
    'create-library-checkout',
    public.registry_int('billing', 'checkout_rate_max', 10),
    public.registry_int('billing', 'checkout_rate_window_s', 600));
  RETURN QUERY SELECT
    p_item_type, p_item_id, found_slug, found_name, left(found_description, 500), found_price,
    (SELECT b.stripe_customer_id FROM public.client_billing b WHERE b.user_id = caller),
    (SELECT r.value FROM public.system_registry r WHERE r.namespace = 'app' AND r.key = 'domain');
END
$$;
REVOKE ALL ON FUNCTION public.prepare_library_checkout(text, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.prepare_library_checkout(text, uuid) TO authenticated;

-- Store the Stripe customer created for a user (the first stored one wins; returns it).
CREATE FUNCTION public.record_stripe_customer(p_user_id uuid, p_customer_id text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  stored text;
BEGIN
  IF p_user_id IS NULL OR p_customer_id IS NULL OR p_customer_id !~ '^cus_[A-Za-z0-9_]{1,250}$' THEN
    RAISE EXCEPTION 'a user and a customer id are required' USING ERRCODE = '22023';
  END IF;
  PERFORM public.billing_lock(ARRAY['customer:' || p_customer_id]);
  PERFORM public.billing_lock(ARRAY['user:' || p_user_id]);
  IF NOT public.link_stripe_customer(p_user_id, p_customer_id) THEN
    RAISE EXCEPTION 'the customer belongs to another user' USING ERRCODE = 'PT409';
  END IF;
  SELECT stripe_customer_id INTO stored FROM public.client_billing WHERE user_id = p_user_id;
  RETURN stored;
END
$$;
REVOKE ALL ON FUNCTION public.record_stripe_customer(uuid, text)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_stripe_customer(uuid, text) TO service_role;

-- The caller's billing customer and the app's domain (the billing portal's return URL).
CREATE FUNCTION public.billing_portal_target()
RETURNS TABLE (customer_id text, domain text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  caller uuid := public.billing_caller();
BEGIN
  RETURN QUERY SELECT
    (SELECT b.stripe_customer_id FROM public.client_billing b WHERE b.user_id = caller),
    (SELECT r.value FROM public.system_registry r WHERE r.namespace = 'app' AND r.key = 'domain');
END
$$;
REVOKE ALL ON FUNCTION public.billing_portal_target() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.billing_portal_target() TO authenticated;

-- What the caller holds, from our own records (no Stripe call): `subscribed` is true for
-- any tier held now, the one-time tier included.
CREATE FUNCTION public.billing_status()
RETURNS TABLE (
  subscribed boolean, status text, tier text, mode text, product_id text, price_id text,
  subscription_end timestamptz, past_due_since timestamptz, grace_ends_at timestamptz,
  checked_at timestamptz
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  caller uuid := public.billing_caller();
  held text := public.current_tier(caller);
  billing public.client_billing;
  held_mode text;
BEGIN
  SELECT * INTO billing FROM public.client_billing b WHERE b.user_id = caller;
  SELECT t.mode INTO held_mode FROM public.tier_entitlements t WHERE t.tier = held;
  RETURN QUERY SELECT
    held IS NOT NULL,
    CASE
      WHEN billing.subscription_id IS NOT NULL
           AND (held IS NULL OR held_mode = 'subscription') THEN billing.status
      WHEN held IS NOT NULL THEN 'active'
      ELSE coalesce(billing.status, 'inactive')
    END,
    held,
    held_mode,
    coalesce(
      (SELECT r.value FROM public.system_registry r
       WHERE r.namespace = 'stripe' AND r.key = 'product_' || held),
      billing.current_product_id),
    coalesce(
      (SELECT r.value FROM public.system_registry r
       WHERE r.namespace = 'stripe' AND r.key = 'price_' || held),
      billing.current_price_id),
    billing.subscription_end,
    billing.past_due_since,
    billing.past_due_since + public.billing_grace(),
    now();
END
$$;
REVOKE ALL ON FUNCTION public.billing_status() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.billing_status() TO authenticated;

-- The success page's fallback: a Checkout Session read back from Stripe, applied exactly
-- as its webhook event would be (idempotent with it). The session must be the user's own
-- (its client_reference_id or metadata.user_id); an unfinished one changes nothing. A
-- subscription read back with the session counts as older than any event about it.
CREATE FUNCTION public.verify_checkout_session(p_user_id uuid, p_session jsonb)
RETURNS TABLE (
  complete boolean, mode text, status text, item_type text, item_id uuid, tier text,
  amount_cents integer, outcome text
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  session_id text := p_session ->> 'id';
  session_mode text := p_session ->> 'mode';
  subscription jsonb := p_session -> 'subscription';
  result text;
  bought public.purchases;
BEGIN
  IF p_user_id IS NULL OR session_id IS NULL
     OR coalesce(p_session ->> 'client_reference_id', p_session -> 'metadata' ->> 'user_id')
        IS DISTINCT FROM p_user_id::text THEN
    RAISE EXCEPTION 'no such checkout session' USING ERRCODE = 'PT404';
  END IF;
  IF p_session ->> 'status' IS DISTINCT FROM 'complete' THEN
    RETURN QUERY SELECT false, session_mode, coalesce(p_session ->> 'status', 'open'),
      NULL::text, NULL::uuid, NULL::text, NULL::integer, 'not complete'::text;
    RETURN;
  END IF;
  IF session_mode = 'payment' THEN
    result := public.apply_one_time_checkout(p_session, now(), 'completed');
    SELECT * INTO bought FROM public.purchases p WHERE p.stripe_session_id = session_id;
    RETURN QUERY SELECT true, session_mode, bought.status, bought.item_type, bought.item_id,
      bought.tier, bought.amount_cents, result;
    RETURN;
  END IF;
  IF session_mode = 'subscription' THEN
    result := public.apply_subscription_checkout(p_session, now());
    IF jsonb_typeof(subscription) = 'object' THEN
      PERFORM public.apply_stripe_subscription(
        subscription, coalesce(public.stripe_time(subscription -> 'created'), '-infinity'), '',
        false);
    END IF;
    RETURN QUERY SELECT true, session_mode,
      (SELECT b.status FROM public.client_billing b WHERE b.user_id = p_user_id),
      'tier'::text, NULL::uuid, public.current_tier(p_user_id), NULL::integer, result;
    RETURN;
  END IF;
  RAISE EXCEPTION 'no such checkout session' USING ERRCODE = 'PT404';
END
$$;
REVOKE ALL ON FUNCTION public.verify_checkout_session(uuid, jsonb)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.verify_checkout_session(uuid, jsonb) TO service_role;
