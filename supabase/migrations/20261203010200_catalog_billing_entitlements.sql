-- The catalog (automations and bundles), what clients bought (purchases, subscriptions),
-- what the tiers allow (tier_entitlements), and the rules that decide it:
-- current_tier(), entitlement_limits(), has_entitlement().
--
-- Nobody writes a price, a status or an owner directly: billing writes purchases and
-- subscriptions as the service role; clients read their own rows.

CREATE TABLE public.automation_agents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
  name text NOT NULL,
  short_outcome text NOT NULL DEFAULT '',
  description text NOT NULL DEFAULT '',
  sectors text[] NOT NULL DEFAULT '{}',
  systems text[] NOT NULL DEFAULT '{}',
  includes text[] NOT NULL DEFAULT '{}',
  requirements text[] NOT NULL DEFAULT '{}',
  how_it_works text[] NOT NULL DEFAULT '{}',
  important_notes text[] NOT NULL DEFAULT '{}',
  setup_time_min integer DEFAULT 20,
  setup_time_max integer DEFAULT 40,
  capacity_recovered_min integer DEFAULT 2,
  capacity_recovered_max integer DEFAULT 5,
  price_cents integer NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
  featured boolean NOT NULL DEFAULT false,
  published_at timestamptz,
  status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
  workflow_file_url text,
  workflow_file_path text,
  guide_file_path text,
  current_version text DEFAULT 'v1',
  n8n_template_ids text[] NOT NULL DEFAULT '{}',
  required_integrations jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(required_integrations) = 'array'),
  workflow_id text,
  webhook_url text,
  configuration_fields jsonb NOT NULL DEFAULT '[]',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.automation_bundles (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
  name text NOT NULL,
  objective text NOT NULL DEFAULT '',
  description text NOT NULL DEFAULT '',
  included_agent_ids uuid[] NOT NULL DEFAULT '{}',
  sectors text[] NOT NULL DEFAULT '{}',
  individual_value_cents integer NOT NULL DEFAULT 0 CHECK (individual_value_cents >= 0),
  bundle_price_cents integer NOT NULL DEFAULT 0 CHECK (bundle_price_cents >= 0),
  featured boolean NOT NULL DEFAULT false,
  published_at timestamptz,
  status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
  bundle_zip_path text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX automation_bundles_included_idx ON public.automation_bundles USING gin (included_agent_ids);

-- What each tier allows (a product decision; the Stripe ids live in system_registry
-- under stripe/price_<tier> and stripe/product_<tier>). NULL means unlimited.
CREATE TABLE public.tier_entitlements (
  tier text PRIMARY KEY CHECK (tier ~ '^[a-z]+$'),
  name text NOT NULL,
  codename text NOT NULL,
  mode text NOT NULL CHECK (mode IN ('subscription', 'payment')),
  rank integer NOT NULL UNIQUE,
  max_live_activations integer CHECK (max_live_activations >= 0),
  max_vps integer CHECK (max_vps >= 0),
  includes_all_published boolean NOT NULL,
  expires boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.tier_entitlements
  (tier, name, codename, mode, rank, max_live_activations, max_vps, includes_all_published, expires)
VALUES
  ('pulse', 'The Pulse', 'TIER-01', 'subscription', 1, 1, 0, false, true),
  ('operator', 'The Operator', 'TIER-02', 'subscription', 2, 10, 1, true, true),
  ('ghost', 'The Ghost', 'TIER-03', 'payment', 3, NULL, 3, true, false);

CREATE TABLE public.purchases (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL,
  item_type text NOT NULL CHECK (item_type IN ('agent', 'bundle', 'tier')),
  item_id uuid,
  tier text REFERENCES public.tier_entitlements (tier),
  stripe_session_id text UNIQUE,
  amount_cents integer NOT NULL CHECK (amount_cents >= 0),
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'completed', 'paid', 'failed', 'refunded')),
  stripe_payment_intent text,
  user_id uuid REFERENCES auth.users (id) ON DELETE SET NULL,  -- purchases are kept
  download_count integer NOT NULL DEFAULT 0 CHECK (download_count >= 0),
  last_download_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((item_type = 'tier') = (item_id IS NULL)),
  CHECK ((item_type = 'tier') = (tier IS NOT NULL))
);
CREATE INDEX purchases_user_status_idx ON public.purchases (user_id, status);
CREATE INDEX purchases_email_status_idx ON public.purchases (email, status);

-- Purchases that count ('completed' is written today; 'paid' is the original's word).
CREATE VIEW public.settled_purchases WITH (security_invoker = true) AS
  SELECT * FROM public.purchases WHERE status IN ('completed', 'paid');

CREATE TABLE public.client_billing (
  user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  stripe_customer_id text UNIQUE,
  current_price_id text,
  current_product_id text,
  status text NOT NULL DEFAULT 'inactive'
    CHECK (status IN ('active', 'inactive', 'past_due', 'canceled', 'trialing')),
  subscription_id text,
  subscription_end timestamptz,
  email_notifications_enabled boolean NOT NULL DEFAULT true,
  renewal_reminders_enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.client_notifications (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  type text NOT NULL CHECK (type IN (
    'sub_active', 'payment_failed', 'canceled', 'renewal_soon', 'welcome', 'generic',
    'automation_activated', 'credential_submitted', 'sms_received', 'missed_call',
    'voicemail', 'call_completed'
  )),
  title text NOT NULL CHECK (char_length(title) <= 200),
  body text NOT NULL CHECK (char_length(body) <= 4000),
  read boolean NOT NULL DEFAULT false,
  severity text NOT NULL DEFAULT 'info'
    CHECK (severity IN ('info', 'warning', 'critical', 'success')),
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_notifications_user_idx
  ON public.client_notifications (user_id, read, created_at DESC);

CREATE TRIGGER automation_agents_set_updated_at BEFORE UPDATE ON public.automation_agents
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER automation_bundles_set_updated_at BEFORE UPDATE ON public.automation_bundles
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER tier_entitlements_set_updated_at BEFORE UPDATE ON public.tier_entitlements
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER purchases_set_updated_at BEFORE UPDATE ON public.purchases
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER client_billing_set_updated_at BEFORE UPDATE ON public.client_billing
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER automation_agents_audit AFTER INSERT OR UPDATE OR DELETE ON public.automation_agents
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('slug');
CREATE TRIGGER automation_bundles_audit AFTER INSERT OR UPDATE OR DELETE ON public.automation_bundles
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('slug');
CREATE TRIGGER tier_entitlements_audit AFTER INSERT OR UPDATE OR DELETE ON public.tier_entitlements
  FOR EACH ROW EXECUTE FUNCTION public.audit_row_change('tier');

-- Row-level security and grants.
ALTER TABLE public.automation_agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.automation_agents FORCE ROW LEVEL SECURITY;
ALTER TABLE public.automation_bundles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.automation_bundles FORCE ROW LEVEL SECURITY;
ALTER TABLE public.tier_entitlements ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tier_entitlements FORCE ROW LEVEL SECURITY;
ALTER TABLE public.purchases ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.purchases FORCE ROW LEVEL SECURITY;
ALTER TABLE public.client_billing ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.client_billing FORCE ROW LEVEL SECURITY;
ALTER TABLE public.client_notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.client_notifications FORCE ROW LEVEL SECURITY;

-- The catalog: anyone reads what is published; admins manage it (audited).
CREATE POLICY automation_agents_select_published ON public.automation_agents
  FOR SELECT TO anon USING (status = 'published');
CREATE POLICY automation_agents_select_published_or_admin ON public.automation_agents
  FOR SELECT TO authenticated USING (status = 'published' OR (SELECT public.is_admin()));
CREATE POLICY automation_agents_admin_insert ON public.automation_agents
  FOR INSERT TO authenticated WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY automation_agents_admin_update ON public.automation_agents
  FOR UPDATE TO authenticated
  USING ((SELECT public.is_admin())) WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY automation_agents_admin_delete ON public.automation_agents
  FOR DELETE TO authenticated USING ((SELECT public.is_admin()));
CREATE POLICY automation_bundles_select_published ON public.automation_bundles
  FOR SELECT TO anon USING (status = 'published');
CREATE POLICY automation_bundles_select_published_or_admin ON public.automation_bundles
  FOR SELECT TO authenticated USING (status = 'published' OR (SELECT public.is_admin()));
CREATE POLICY automation_bundles_admin_insert ON public.automation_bundles
  FOR INSERT TO authenticated WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY automation_bundles_admin_update ON public.automation_bundles
  FOR UPDATE TO authenticated
  USING ((SELECT public.is_admin())) WITH CHECK ((SELECT public.is_admin()));
CREATE POLICY automation_bundles_admin_delete ON public.automation_bundles
  FOR DELETE TO authenticated USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.automation_agents, public.automation_bundles
  FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.automation_agents, public.automation_bundles TO anon;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.automation_agents, public.automation_bundles
  TO authenticated, service_role;

-- Tiers: public product information; admins adjust limits (audited).
CREATE POLICY tier_entitlements_select_all ON public.tier_entitlements
  FOR SELECT TO authenticated USING (true);
CREATE POLICY tier_entitlements_admin_update ON public.tier_entitlements
  FOR UPDATE TO authenticated
  USING ((SELECT public.is_admin())) WITH CHECK ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.tier_entitlements FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.tier_entitlements TO authenticated, service_role;
GRANT UPDATE (max_live_activations, max_vps, includes_all_published)
  ON TABLE public.tier_entitlements TO authenticated;

-- Purchases and subscriptions: clients read their own, admins all, the service writes.
CREATE POLICY purchases_select_own ON public.purchases
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
CREATE POLICY client_billing_select_own ON public.client_billing
  FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR (SELECT public.is_admin()));
CREATE POLICY client_billing_update_preferences ON public.client_billing
  FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
REVOKE ALL ON TABLE public.purchases, public.settled_purchases, public.client_billing
  FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.purchases, public.client_billing TO authenticated;
GRANT UPDATE (email_notifications_enabled, renewal_reminders_enabled)
  ON TABLE public.client_billing TO authenticated;
GRANT SELECT, INSERT, UPDATE ON TABLE public.purchases, public.client_billing TO service_role;
GRANT SELECT ON TABLE public.settled_purchases TO service_role;

-- Notifications: clients read theirs and mark them read.
CREATE POLICY client_notifications_select_own ON public.client_notifications
  FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()));
CREATE POLICY client_notifications_mark_read ON public.client_notifications
  FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
REVOKE ALL ON TABLE public.client_notifications FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.client_notifications TO authenticated;
GRANT UPDATE (read) ON TABLE public.client_notifications TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.client_notifications TO service_role;

-- The strongest tier a user holds right now: a one-time tier bought (never expires), or an
-- active subscription to a tier's price (source of truth for prices: the registry).
CREATE FUNCTION public.current_tier(p_user_id uuid)
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
            AND b.status IN ('active', 'trialing')
            AND (b.subscription_end IS NULL OR b.subscription_end > now()))
  ORDER BY t.rank DESC
  LIMIT 1
$$;
REVOKE ALL ON FUNCTION public.current_tier(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.current_tier(uuid) TO service_role;

-- Who may ask about `p_user_id`: the user, an admin, or the service role.
CREATE FUNCTION public.assert_may_inspect(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role'
     AND p_user_id IS DISTINCT FROM auth.uid()
     AND NOT public.is_admin() THEN
    RAISE EXCEPTION 'you may only ask about yourself' USING ERRCODE = '42501';
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.assert_may_inspect(uuid) FROM PUBLIC, anon, authenticated, service_role;

-- The limits that apply to a user: admins have none, users without a tier have no
-- managed activations or VPS (library purchases are downloads).
CREATE FUNCTION public.entitlement_limits(p_user_id uuid)
RETURNS TABLE (
  tier text,
  max_live_activations integer,
  max_vps integer,
  includes_all_published boolean
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  held text;
BEGIN
  PERFORM public.assert_may_inspect(p_user_id);
  IF public.user_is_admin(p_user_id) THEN
    RETURN QUERY SELECT 'admin'::text, NULL::integer, NULL::integer, true;
    RETURN;
  END IF;
  held := public.current_tier(p_user_id);
  IF held IS NULL THEN
    RETURN QUERY SELECT 'none'::text, 0, 0, false;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT t.tier, t.max_live_activations, t.max_vps, t.includes_all_published
    FROM public.tier_entitlements t WHERE t.tier = held;
END
$$;
REVOKE ALL ON FUNCTION public.entitlement_limits(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.entitlement_limits(uuid) TO authenticated, service_role;

-- Whether a user may use a catalog item (an automation 'agent' or a 'bundle'): bought it,
-- bought a bundle holding it, or holds a tier that includes every published item.
-- Purchases entitle for good; admins always are.
CREATE FUNCTION public.has_entitlement(p_user_id uuid, p_item_type text, p_item_id uuid)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  published boolean;
BEGIN
  PERFORM public.assert_may_inspect(p_user_id);
  IF p_item_type IS NULL OR p_item_type NOT IN ('agent', 'bundle') THEN
    RAISE EXCEPTION 'item type must be agent or bundle' USING ERRCODE = '22023';
  END IF;
  IF p_user_id IS NULL OR p_item_id IS NULL THEN
    RETURN false;
  END IF;
  IF public.user_is_admin(p_user_id) THEN
    RETURN true;
  END IF;
  IF EXISTS (
    SELECT 1 FROM public.settled_purchases
    WHERE user_id = p_user_id AND item_type = p_item_type AND item_id = p_item_id
  ) THEN
    RETURN true;
  END IF;
  IF p_item_type = 'agent' AND EXISTS (
    SELECT 1
    FROM public.settled_purchases p
    JOIN public.automation_bundles b ON b.id = p.item_id
    WHERE p.user_id = p_user_id AND p.item_type = 'bundle'
      AND p_item_id = ANY (b.included_agent_ids)
  ) THEN
    RETURN true;
  END IF;
  IF p_item_type = 'agent' THEN
    SELECT status = 'published' INTO published FROM public.automation_agents WHERE id = p_item_id;
  ELSE
    SELECT status = 'published' INTO published FROM public.automation_bundles WHERE id = p_item_id;
  END IF;
  RETURN coalesce(published, false) AND EXISTS (
    SELECT 1 FROM public.tier_entitlements
    WHERE tier = public.current_tier(p_user_id) AND includes_all_published
  );
END
$$;
REVOKE ALL ON FUNCTION public.has_entitlement(uuid, text, uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.has_entitlement(uuid, text, uuid) TO authenticated, service_role;
