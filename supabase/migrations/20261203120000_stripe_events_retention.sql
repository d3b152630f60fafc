-- Verified Stripe events age out too. They are kept to recognise Stripe's retries (it
-- retries a webhook for up to three days), so the period never goes below seven days,
-- whatever the registry says.

INSERT INTO public.system_registry (namespace, key, value, description) VALUES
  ('retention', 'stripe_events_days', '90',
   'Verified Stripe webhook events received longer ago are removed (never fewer than 7 days)');

CREATE OR REPLACE FUNCTION public.apply_retention()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  period interval;
  removed integer;
  report jsonb := '{}';
BEGIN
  period := public.retention_period('agent_heartbeats_days', 'days');
  IF period IS NOT NULL THEN
    DELETE FROM public.agent_heartbeats WHERE created_at < now() - period;
    GET DIAGNOSTICS removed = ROW_COUNT;
    report := report || jsonb_build_object('agent_heartbeats', removed);
  END IF;
  period := public.retention_period('provisioning_queue_days', 'days');
  IF period IS NOT NULL THEN
    DELETE FROM public.provisioning_queue
    WHERE status IN ('completed', 'failed', 'cancelled') AND updated_at < now() - period;
    GET DIAGNOSTICS removed = ROW_COUNT;
    report := report || jsonb_build_object('provisioning_queue', removed);
  END IF;
  period := public.retention_period('rate_limits_hours', 'hours');
  IF period IS NOT NULL THEN
    DELETE FROM public.rate_limits WHERE window_start < now() - interval '1 day' - period;
    GET DIAGNOSTICS removed = ROW_COUNT;
    report := report || jsonb_build_object('rate_limits', removed);
  END IF;
  period := public.retention_period('stripe_events_days', 'days');
  IF period IS NOT NULL THEN
    DELETE FROM public.stripe_events
    WHERE received_at < now() - greatest(period, interval '7 days');
    GET DIAGNOSTICS removed = ROW_COUNT;
    report := report || jsonb_build_object('stripe_events', removed);
  END IF;
  IF EXISTS (SELECT 1 FROM jsonb_each(report) WHERE value::integer > 0) THEN
    PERFORM public.audit_event(
      'retention', 'RETENTION: removed rows past their retention period', report
    );
  END IF;
  RETURN report;
END
$$;
