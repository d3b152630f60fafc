-- Billing records: every verified Stripe event, stored once per webhook endpoint, and the
-- facts the events establish — one row per subscription, per invoice and per reversed
-- charge — from which each client's `client_billing` row is derived.
--
-- Every fact merges the same way whatever order its events arrive in (the newest snapshot
-- of a subscription, an invoice once paid stays paid, the first failure of an invoice,
-- the earliest report of a refund, the strongest status of a purchase), so duplicates and
-- out-of-order delivery end in the state that in-order delivery produces.
--
-- Clients read their own `client_billing` and `purchases` rows; only the billing
-- functions write billing state.

INSERT INTO public.system_registry (namespace, key, value, description) VALUES
  ('billing', 'grace_days', '7',
   'Days a failed subscription payment keeps access before live activations pause'),
  ('billing', 'checkout_rate_max', '10', 'Checkout sessions a client may start per window'),
  ('billing', 'checkout_rate_window_s', '600', 'The window of checkout_rate_max, seconds');

-- A disputed payment entitles to nothing, like a refunded one.
ALTER TABLE public.purchases DROP CONSTRAINT purchases_status_check;
ALTER TABLE public.purchases ADD CONSTRAINT purchases_status_check
  CHECK (status IN ('pending', 'completed', 'paid', 'failed', 'refunded', 'disputed'));
CREATE INDEX purchases_payment_intent_idx ON public.purchases (stripe_payment_intent)
  WHERE stripe_payment_intent IS NOT NULL;

-- What the standing of a subscription rests on, derived from the facts below.
ALTER TABLE public.client_billing
  ADD COLUMN past_due_since timestamptz,
  ADD COLUMN last_payment_at timestamptz,
  ADD COLUMN payment_reversed_at timestamptz;
COMMENT ON COLUMN public.client_billing.past_due_since IS
  'First failure of the oldest unpaid invoice of the current subscription (the grace clock)';
COMMENT ON COLUMN public.client_billing.last_payment_at IS
  'When the newest paid subscription invoice was paid';
COMMENT ON COLUMN public.client_billing.payment_reversed_at IS
  'The newest full refund or dispute of a subscription payment; access returns with a later payment';

-- Every verified event, once per endpoint: Stripe sends the same event (same id) to every
-- endpoint subscribed to its type, and each endpoint applies its own part of it.
CREATE TABLE public.stripe_events (
  endpoint text NOT NULL CHECK (endpoint IN ('library', 'portal')),
  id text NOT NULL CHECK (id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
  type text NOT NULL CHECK (char_length(type) BETWEEN 1 AND 200),
  object_id text CHECK (char_length(object_id) <= 255),
  created timestamptz NOT NULL,
  livemode boolean NOT NULL DEFAULT false,
  api_version text CHECK (char_length(api_version) <= 64),
  payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
  outcome text NOT NULL DEFAULT 'received' CHECK (char_length(outcome) <= 500),
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (endpoint, id)
);
CREATE INDEX stripe_events_received_idx ON public.stripe_events (received_at DESC);
CREATE INDEX stripe_events_object_idx ON public.stripe_events (object_id);

-- One row per subscription: the newest snapshot Stripe sent (a cancelled subscription
-- never comes back), and whose it is.
CREATE TABLE public.billing_subscriptions (
  id text PRIMARY KEY CHECK (id ~ '^sub_[A-Za-z0-9_]{1,250}$'),
  user_id uuid REFERENCES auth.users (id) ON DELETE CASCADE,  -- the billing mirror goes
  customer_id text NOT NULL CHECK (customer_id ~ '^cus_[A-Za-z0-9_]{1,250}$'),
  -- Stripe's word, or `unknown` while only a checkout or an invoice has named it
  status text NOT NULL DEFAULT 'unknown' CHECK (status ~ '^[a-z_]{1,40}$'),
  price_id text CHECK (char_length(price_id) <= 255),
  product_id text CHECK (char_length(product_id) <= 255),
  current_period_end timestamptz,
  cancel_at_period_end boolean NOT NULL DEFAULT false,
  stripe_created_at timestamptz,
  -- the version of the snapshot: the event's `created`, then its id
  snapshot_at timestamptz NOT NULL DEFAULT '-infinity',
  snapshot_event text NOT NULL DEFAULT '' CHECK (char_length(snapshot_event) <= 255),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_subscriptions_user_idx ON public.billing_subscriptions (user_id);
CREATE INDEX billing_subscriptions_customer_idx ON public.billing_subscriptions (customer_id);

-- One row per subscription invoice: paid once paid, and when it first failed.
CREATE TABLE public.billing_invoices (
  id text PRIMARY KEY CHECK (id ~ '^in_[A-Za-z0-9_]{1,250}$'),
  customer_id text NOT NULL CHECK (char_length(customer_id) <= 255),
  subscription_id text NOT NULL CHECK (char_length(subscription_id) <= 255),
  paid_at timestamptz,
  first_failed_at timestamptz,
  amount_paid integer NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
  currency text CHECK (char_length(currency) <= 10),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_invoices_subscription_idx ON public.billing_invoices (subscription_id);
CREATE INDEX billing_invoices_customer_idx ON public.billing_invoices (customer_id);

-- Charges whose money went back: fully refunded or disputed.
CREATE TABLE public.billing_reversals (
  charge_id text NOT NULL CHECK (charge_id ~ '^(ch|py)_[A-Za-z0-9_]{1,250}$'),
  kind text NOT NULL CHECK (kind IN ('refund', 'dispute')),
  payment_intent text CHECK (char_length(payment_intent) <= 255),
  customer_id text CHECK (char_length(customer_id) <= 255),
  amount integer NOT NULL DEFAULT 0 CHECK (amount >= 0),
  occurred_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (charge_id, kind)
);
CREATE INDEX billing_reversals_intent_idx ON public.billing_reversals (payment_intent);
CREATE INDEX billing_reversals_customer_idx ON public.billing_reversals (customer_id);

CREATE TRIGGER billing_subscriptions_set_updated_at BEFORE UPDATE ON public.billing_subscriptions
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER billing_invoices_set_updated_at BEFORE UPDATE ON public.billing_invoices
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Operators read the records; nobody writes them except the billing functions.
ALTER TABLE public.stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.stripe_events FORCE ROW LEVEL SECURITY;
ALTER TABLE public.billing_subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.billing_subscriptions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.billing_invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.billing_invoices FORCE ROW LEVEL SECURITY;
ALTER TABLE public.billing_reversals ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.billing_reversals FORCE ROW LEVEL SECURITY;
CREATE POLICY stripe_events_select_admin ON public.stripe_events
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY billing_subscriptions_select_admin ON public.billing_subscriptions
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY billing_invoices_select_admin ON public.billing_invoices
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY billing_reversals_select_admin ON public.billing_reversals
  FOR SELECT TO authenticated USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.stripe_events, public.billing_subscriptions, public.billing_invoices,
  public.billing_reversals
  FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.stripe_events, public.billing_subscriptions, public.billing_invoices,
  public.billing_reversals
  TO authenticated, service_role;
