"""The three tiers and their Stripe price and product ids (the original's
`src/lib/stripe-config.ts`).

The source of truth is `system_registry` (`stripe/price_<tier>`, `stripe/product_<tier>`)
and `tier_entitlements` (name, codename, mode); this is a typed copy for code that wants
the ids without a query, and `tests/test_stripe_config.py` keeps it identical to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["STRIPE_TIERS", "Tier", "tier_by_price_id", "tier_by_product_id"]


@dataclass(frozen=True)
class Tier:
    key: str
    name: str
    codename: str
    price_display: str
    price: str
    price_id: str
    product_id: str
    mode: Literal["subscription", "payment"]


STRIPE_TIERS: tuple[Tier, ...] = (
    Tier(
        key="pulse",
        name="The Pulse",
        codename="TIER-01",
        price_display="$99 \u2013 $250",
        price="$99",
        price_id="price_1SzdaCJAQcpzy6vVzFLVYkgd",
        product_id="prod_TxYhnRbOluZBaB",
        mode="subscription",
    ),
    Tier(
        key="operator",
        name="The Operator",
        codename="TIER-02",
        price_display="$2,500 \u2013 $5,000",
        price="$2,500",
        price_id="price_1SzdaEJAQcpzy6vVucQakAuA",
        product_id="prod_TxYhoVock3Bxgb",
        mode="subscription",
    ),
    Tier(
        key="ghost",
        name="The Ghost",
        codename="TIER-03",
        price_display="$25K \u2013 $50K",
        price="$25,000",
        price_id="price_1SzdaGJAQcpzy6vVyMmTifQW",
        product_id="prod_TxYhXs1DPZsWtZ",
        mode="payment",
    ),
)


def tier_by_price_id(price_id: str) -> Tier | None:
    return next((tier for tier in STRIPE_TIERS if tier.price_id == price_id), None)


def tier_by_product_id(product_id: str) -> Tier | None:
    return next((tier for tier in STRIPE_TIERS if tier.product_id == product_id), None)
