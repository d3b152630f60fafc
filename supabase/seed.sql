-- Local development data, run by `make run` (`aerelion db push --include-seed`) and by
-- `supabase db reset`; never by a plain `db push` to production.

-- Functions are served locally by `make run`.
UPDATE public.system_registry
SET value = 'http://127.0.0.1:54321/functions/v1'
WHERE namespace = 'app' AND key = 'functions_url';

-- Hostinger settings matching the local stand-in `make run` starts (set the real ones,
-- from GET /api/vps/v1/data-centers and /templates, when HOSTINGER_API_TOKEN is set).
UPDATE public.system_registry SET value = '{"us-east-1": 17, "us-west-1": 29, "eu-west-1": 19, "eu-central-1": 21, "eu-west-2": 23, "ap-southeast-1": 25}'
WHERE namespace = 'hostinger' AND key = 'regions';
UPDATE public.system_registry SET value = '1130' WHERE namespace = 'hostinger' AND key = 'template_id';
UPDATE public.system_registry SET value = '2' WHERE namespace = 'hostinger' AND key = 'poll_interval_s';

-- The original catalog's items and prices (descriptions are placeholders).
INSERT INTO public.automation_agents (slug, name, short_outcome, status, published_at, price_cents)
VALUES
  ('lead-intake-router', 'Lead Intake Router', 'Every inbound lead routed in minutes', 'published', now(), 4900),
  ('crm-enrichment-layer', 'CRM Enrichment Layer', 'Complete CRM records without typing', 'published', now(), 5900),
  ('appointment-confirmations', 'Appointment Confirmations', 'Fewer no-shows', 'published', now(), 3900),
  ('invoice-receipt-automations', 'Invoice & Receipt Automations', 'Paperwork filed on arrival', 'published', now(), 6900),
  ('customer-support-triage', 'Customer Support Triage', 'Tickets sorted before anyone looks', 'published', now(), 5900),
  ('content-repurpose-pipeline', 'Content Repurpose Pipeline', 'One piece of content, every channel', 'published', now(), 7900),
  ('shopify-order-ops', 'Shopify Order Ops', 'Orders handled end to end', 'published', now(), 6900),
  ('deal-stage-hygiene', 'Deal Stage Hygiene', 'A pipeline that tells the truth', 'published', now(), 4900),
  ('weekly-kpi-digest', 'Weekly KPI Digest', 'The numbers, every Monday', 'published', now(), 3900),
  ('client-onboarding-pack', 'Client Onboarding Pack', 'New clients set up without chasing', 'published', now(), 8900)
ON CONFLICT (slug) DO NOTHING;

INSERT INTO public.automation_bundles
  (slug, name, objective, status, published_at, bundle_price_cents, individual_value_cents)
VALUES
  ('starter-ops-bundle', 'Starter Ops Bundle', 'The first automations every team needs', 'published', now(), 14900, 17600),
  ('sales-ops-bundle', 'Sales Ops Bundle', 'A sales pipeline that runs itself', 'published', now(), 19900, 25800),
  ('ecommerce-ops-bundle', 'E-commerce Ops Bundle', 'Store operations on autopilot', 'published', now(), 21900, 27600),
  ('support-ops-bundle', 'Support Ops Bundle', 'Support that keeps up', 'published', now(), 17900, 23600),
  ('creator-ops-bundle', 'Creator Ops Bundle', 'Publish once, reach everywhere', 'published', now(), 20900, 25600)
ON CONFLICT (slug) DO NOTHING;
