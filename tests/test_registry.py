"""Registry settings read by the Python side: the environment wins over the registry."""

import pytest

from aerelion.registry import registry_value
from aerelion.transactions import Database
from support import settings_for

pytestmark = pytest.mark.anyio


async def test_the_environment_overrides_the_registry(migrated_database):
    database = Database(migrated_database, pool_size=1, transaction_pooler=False)
    await database.open()
    try:
        async with database.as_service() as tx:
            plain = settings_for()
            assert await registry_value(tx, plain, "app", "functions_url") == (
                "http://127.0.0.1:54321/functions/v1"  # the local seed's value
            )
            assert await registry_value(tx, plain, "hostinger", "api_base") == (
                "https://developers.hostinger.com"
            )
            overridden = settings_for(AERELION_PUBLIC_URL="https://functions.example.com/v1")
            assert await registry_value(tx, overridden, "app", "functions_url") == (
                "https://functions.example.com/v1"
            )
            assert await registry_value(tx, overridden, "app", "domain") == "app.aerelion.systems"
    finally:
        await database.close()
