"""The Stripe Billing Portal for the caller (the same handler as billing-portal-session)."""

from aerelion.billing_portal import portal_function

function = portal_function("customer-portal")
