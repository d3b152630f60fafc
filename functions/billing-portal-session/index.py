"""The Stripe Billing Portal for the caller (the same handler as customer-portal)."""

from aerelion.billing_portal import portal_function

function = portal_function("billing-portal-session")
