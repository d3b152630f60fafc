import hashlib
import hmac

from aerelion.auth import same_secret
from aerelion.errors import ApiError
from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    secret = call.secret("TEST_WEBHOOK_SECRET") or ""
    expected = hmac.new(secret.encode(), call.raw_body, hashlib.sha256).hexdigest()
    if not secret or not same_secret(call.headers.get("x-signature", ""), expected):
        raise ApiError(401, "invalid_signature", "Invalid signature")
    return {"received": len(call.raw_body)}


function = Function(name="webhook", handler=handle, auth="signature")
