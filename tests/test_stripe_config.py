"""`aerelion.stripe_config` is a typed copy of the registry's Stripe ids and of the tiers:
it must stay identical to them."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from aerelion.stripe_config import STRIPE_TIERS, tier_by_price_id, tier_by_product_id


def test_the_tiers_are_the_registrys(migrated_database):
    with psycopg.connect(migrated_database, row_factory=dict_row) as conn:
        registry = {
            row["key"]: row["value"]
            for row in conn.execute(
                "select key, value from public.system_registry where namespace = 'stripe'"
                " and (key like 'price\\_%' or key like 'product\\_%')"
            )
        }
        tiers = conn.execute(
            "select tier, name, codename, mode from public.tier_entitlements order by rank"
        ).fetchall()
    assert [(t.key, t.name, t.codename, t.mode) for t in STRIPE_TIERS] == [
        (t["tier"], t["name"], t["codename"], t["mode"]) for t in tiers
    ]
    copied = {f"price_{t.key}": t.price_id for t in STRIPE_TIERS}
    copied |= {f"product_{t.key}": t.product_id for t in STRIPE_TIERS}
    assert copied == registry


def test_the_original_tiers_and_lookups():
    assert [t.key for t in STRIPE_TIERS] == ["pulse", "operator", "ghost"]
    assert [t.mode for t in STRIPE_TIERS] == ["subscription", "subscription", "payment"]
    assert [t.price for t in STRIPE_TIERS] == ["$99", "$2,500", "$25,000"]
    assert tier_by_price_id("price_1SzdaGJAQcpzy6vVyMmTifQW").key == "ghost"
    assert tier_by_product_id("prod_TxYhnRbOluZBaB").key == "pulse"
    assert tier_by_price_id("price_unknown") is None
    assert tier_by_product_id("prod_unknown") is None
