"""The Hostinger client against the Hostinger stand-in over real loopback HTTP.

Every stand-in listens on 127.0.0.1 on an ephemeral port; timeouts are short so the faults
(lost replies, hangs, rate limits) cost well under a second each.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest

from aerelion.hostinger import HostingerClient, HostingerError, VirtualMachine
from aerelion.standins.hostinger import (
    N8N_TEMPLATE_ID,
    SPEC,
    HostingerStandIn,
    schema_errors,
)

pytestmark = pytest.mark.anyio

TOKEN = "hst-test-token-3f9a1c0d7e"
ITEM = "hostingercom-vps-kvm2-usd-1m"
VMS = "/api/vps/v1/virtual-machines"
SETUP_SECONDS = 0.2


def setup_for(hostname: str) -> dict:
    return {
        "template_id": N8N_TEMPLATE_ID,
        "data_center_id": 19,
        "hostname": hostname,
        "password": "correct-horse-battery",
        "public_key": {"name": "aerelion", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"},
        "enable_backups": False,
        "install_monarx": False,
    }


@pytest.fixture(scope="module")
def running_standin() -> Iterator[HostingerStandIn]:
    with HostingerStandIn(token=TOKEN, setup_seconds=SETUP_SECONDS) as server:
        yield server


@pytest.fixture
def standin(running_standin: HostingerStandIn) -> HostingerStandIn:
    """The module's stand-in, emptied for each test."""
    running_standin.reset()
    return running_standin


@pytest.fixture
async def hostinger(standin: HostingerStandIn) -> AsyncIterator[HostingerClient]:
    assert standin.url is not None
    async with HostingerClient(standin.url, TOKEN, timeout=1.0) as client:
        client.backoff_base = 0.01
        yield client


async def wait_for(
    client: HostingerClient, vm_id: int, *states: str, timeout: float = 5.0
) -> tuple[VirtualMachine, list[str]]:
    """Poll until the VM is in one of `states`; returns it and the states seen on the way."""
    seen: list[str] = []
    with anyio.fail_after(timeout):
        while True:
            vm = await client.get_virtual_machine(vm_id)
            if not seen or seen[-1] != vm.state:
                seen.append(vm.state)
            if vm.state in states:
                return vm, seen
            await anyio.sleep(0.02)


def posts(standin: HostingerStandIn, path: str = VMS) -> list:
    return [body for method, logged, body in standin.requests if (method, logged) == ("POST", path)]


def assert_no_token(error: BaseException) -> None:
    for text in (str(error), repr(error), getattr(error, "message", ""), *map(str, error.args)):
        assert TOKEN not in text


# -- the happy path -------------------------------------------------------------------


async def test_purchase_creates_then_runs_with_an_ipv4_address(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    order, vm = await hostinger.purchase_virtual_machine(
        item_id=ITEM, setup=setup_for("aerelion-happy")
    )

    assert order["status"] == "completed"
    assert schema_errors("Billing.V1.Order.OrderResource", order) == {}
    assert (vm.state, vm.actions_lock, vm.hostname) == ("creating", "locked", "aerelion-happy")
    assert (vm.plan, vm.data_center_id, vm.ipv4) == ("KVM 2", 19, [])

    running, seen = await wait_for(hostinger, vm.id, "running")
    assert seen[0] == "creating"
    assert running.actions_lock == "unlocked"
    assert len(running.ipv4) == 1
    assert ipaddress.ip_address(running.ipv4[0]) in ipaddress.ip_network("203.0.113.0/24")
    assert standin.purchases == 1
    resource = standin.virtual_machine(vm.id)
    assert schema_errors("VPS.V1.VirtualMachine.VirtualMachineResource", resource) == {}
    assert resource is not None and resource["template"]["id"] == N8N_TEMPLATE_ID


async def test_find_by_hostname_reads_the_list(hostinger: HostingerClient) -> None:
    _, first = await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-a"))
    _, second = await hostinger.purchase_virtual_machine(
        item_id="hostingercom-vps-kvm4-usd-1m", setup=setup_for("aerelion-b")
    )

    assert [vm.id for vm in await hostinger.list_virtual_machines()] == [first.id, second.id]
    found = await hostinger.find_by_hostname("aerelion-b")
    assert found is not None and (found.id, found.plan) == (second.id, "KVM 4")
    assert (await hostinger.find_by_hostname("AERELION-A")) == await hostinger.get_virtual_machine(
        first.id
    )
    assert await hostinger.find_by_hostname("aerelion-missing") is None


async def test_payment_method_is_optional_and_can_be_named(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    await hostinger.purchase_virtual_machine(
        item_id=ITEM, setup=setup_for("aerelion-pm"), payment_method_id=1327362
    )
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(
            item_id=ITEM, setup=setup_for("aerelion-pm2"), payment_method_id=99
        )
    assert caught.value.status == 422
    assert caught.value.errors == {
        "payment_method_id": ["The selected payment method id is invalid."]
    }
    assert [body.get("payment_method_id") for body in posts(standin)] == [1327362, 99]


# -- refusals ---------------------------------------------------------------------------


async def test_unknown_vm_is_a_404_and_not_retried(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    with pytest.raises(HostingerError) as caught:
        await hostinger.get_virtual_machine(424242)
    error = caught.value
    assert (error.status, error.retryable, error.outcome_unknown) == (404, False, False)
    assert standin.requests == [("GET", f"{VMS}/424242", None)]


async def test_bad_token_is_a_401_and_not_retried(standin: HostingerStandIn) -> None:
    assert standin.url is not None
    async with HostingerClient(standin.url, "not-the-token", timeout=1.0) as client:
        with pytest.raises(HostingerError) as caught:
            await client.list_virtual_machines()
    error = caught.value
    assert (error.status, error.message, error.retryable) == (401, "Unauthenticated", False)
    assert error.correlation_id
    assert "not-the-token" not in str(error)
    assert len(standin.requests) == 1


async def test_unknown_item_id_is_a_422_with_the_api_message(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(
            item_id="hostingercom-vps-kvm3-usd-1m", setup=setup_for("aerelion-bad-item")
        )
    error = caught.value
    assert (error.status, error.retryable, error.outcome_unknown) == (422, False, False)
    assert error.message == "The selected item id is invalid."
    assert error.errors == {"item_id": ["The selected item id is invalid."]}
    assert "The selected item id is invalid." in str(error)
    assert standin.purchases == 0
    assert await hostinger.list_virtual_machines() == []


async def test_short_password_is_a_422_that_never_echoes_it(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    setup = {**setup_for("aerelion-short"), "password": "tooShort1!"}
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup)
    error = caught.value
    assert (error.status, error.retryable, error.outcome_unknown) == (422, False, False)
    assert error.message == "The setup.password field must be at least 12 characters."
    assert list(error.errors) == ["setup.password"]
    assert "tooShort1!" not in str(error)
    assert standin.purchases == 0


async def test_several_problems_are_summed_up_as_the_api_does(hostinger: HostingerClient) -> None:
    setup = {"template_id": "1130", "hostname": "aerelion-x", "password": "short"}
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(item_id="nope", setup=setup)
    assert caught.value.message == "The selected item id is invalid. (and 3 more errors)"
    assert caught.value.errors == {
        "item_id": ["The selected item id is invalid."],
        "setup.data_center_id": ["The setup.data center id field is required."],
        "setup.template_id": ["The setup.template id field must be an integer."],
        "setup.password": ["The setup.password field must be at least 12 characters."],
    }


# -- rate limits and server errors -------------------------------------------------------


async def test_429_on_a_get_is_retried_after_retry_after(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.fail_next("list", 429, retry_after=1)
    started = time.monotonic()

    assert await hostinger.list_virtual_machines() == []

    assert time.monotonic() - started >= 0.95
    assert [method for method, _, _ in standin.requests] == ["GET", "GET"]


async def test_5xx_on_a_get_is_retried_get_retries_times(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.fail_next("data_centers", 503, times=2)
    assert len(await hostinger.list_data_centers()) > 0
    assert len(standin.requests) == 3

    standin.fail_next(f"GET {VMS}", 500, times=3)
    with pytest.raises(HostingerError) as caught:
        await hostinger.list_virtual_machines()
    error = caught.value
    assert (error.status, error.retryable, error.outcome_unknown) == (500, True, False)
    assert error.message == "Internal server error"
    assert len(standin.requests) == 6


async def test_a_retry_after_beyond_the_cap_is_left_to_the_caller(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.fail_next("list", 429, retry_after=60)
    started = time.monotonic()
    with pytest.raises(HostingerError) as caught:
        await hostinger.list_virtual_machines()
    assert time.monotonic() - started < 1
    assert (caught.value.status, caught.value.retry_after, caught.value.retryable) == (
        429,
        60.0,
        True,
    )
    assert len(standin.requests) == 1


async def test_429_on_purchase_is_not_retried(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.fail_next("purchase", 429, retry_after=1)
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-429"))
    error = caught.value
    assert (error.status, error.retryable, error.outcome_unknown) == (429, True, False)
    assert error.retry_after == 1.0
    assert len(posts(standin)) == 1
    assert standin.purchases == 0


async def test_500_on_purchase_leaves_the_outcome_unknown(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.fail_next("VPS_purchaseNewVirtualMachineV1", 500)
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-500"))
    assert (caught.value.status, caught.value.outcome_unknown) == (500, True)
    assert len(posts(standin)) == 1

    # And it can indeed have happened: the order went through, only the reply failed.
    standin.fail_next("purchase", 502, carry_out=True)
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-502"))
    assert (caught.value.status, caught.value.outcome_unknown) == (502, True)
    assert await hostinger.find_by_hostname("aerelion-502") is not None
    assert await hostinger.find_by_hostname("aerelion-500") is None
    assert standin.purchases == 1


# -- lost replies -------------------------------------------------------------------------


async def test_purchase_timeout_leaves_the_outcome_unknown(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.delay_next("purchase", 0.6)
    assert standin.url is not None
    started = time.monotonic()
    async with HostingerClient(standin.url, TOKEN, timeout=0.3) as impatient:
        with pytest.raises(HostingerError) as caught:
            await impatient.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-slow"))
    error = caught.value
    assert time.monotonic() - started < 0.6  # gave up before the (successful) reply
    assert (error.status, error.outcome_unknown) == (None, True)
    assert len(posts(standin)) == 1

    # The API finishes the purchase after the client gave up.
    with anyio.fail_after(3):
        while await hostinger.find_by_hostname("aerelion-slow") is None:
            await anyio.sleep(0.05)
    assert standin.purchases == 1


async def test_a_lost_purchase_reply_still_bought_the_vm(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.lose_next_purchase_reply()
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-lost"))
    assert (caught.value.status, caught.value.outcome_unknown) == (None, True)

    found = await hostinger.find_by_hostname("aerelion-lost")
    assert found is not None and found.state in ("creating", "running")
    assert standin.purchases == 1
    assert len(posts(standin)) == 1


async def test_a_purchase_reply_held_past_the_timeout(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.lose_next_purchase_reply(hang=True)
    assert standin.url is not None
    started = time.monotonic()
    async with HostingerClient(standin.url, TOKEN, timeout=0.3) as impatient:
        with pytest.raises(HostingerError) as caught:
            await impatient.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-hung"))
    assert time.monotonic() - started < 2  # the client's timeout, not the stand-in's limit
    assert (caught.value.status, caught.value.outcome_unknown) == (None, True)
    assert await hostinger.find_by_hostname("aerelion-hung") is not None


async def test_a_dropped_purchase_bought_nothing(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.drop_next_purchase()
    with pytest.raises(HostingerError) as caught:
        await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-gone"))
    assert (caught.value.status, caught.value.outcome_unknown) == (None, True)
    assert await hostinger.find_by_hostname("aerelion-gone") is None
    assert standin.purchases == 0


async def test_no_connection_is_retryable_and_certainly_not_done() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with HostingerClient(f"http://127.0.0.1:{port}", TOKEN, timeout=1.0) as client:
        with pytest.raises(HostingerError) as caught:
            await client.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-off"))
    error = caught.value
    assert (error.status, error.retryable, error.outcome_unknown) == (None, True, False)
    assert_no_token(error)


# -- setup, restart, metrics ------------------------------------------------------------


async def test_setup_of_an_initial_vm(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.leave_initial_next_purchase()
    _, vm = await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-init"))
    assert (vm.state, vm.actions_lock, vm.ipv4) == ("initial", "unlocked", [])
    # Not set up means not renamed either: the VM cannot be found by the hostname asked for.
    assert vm.hostname == f"srv{vm.id}.hstgr.cloud"
    assert await hostinger.find_by_hostname("aerelion-init") is None

    set_up = await hostinger.setup_virtual_machine(vm.id, setup_for("aerelion-init"))
    assert (set_up.state, set_up.hostname) == ("creating", "aerelion-init")
    running, _ = await wait_for(hostinger, vm.id, "running")
    assert running.ipv4

    with pytest.raises(HostingerError) as caught:
        await hostinger.setup_virtual_machine(vm.id, setup_for("aerelion-init"))
    error = caught.value
    assert (error.status, error.retryable, error.outcome_unknown) == (422, False, False)
    assert "initial" in error.message
    assert len(posts(standin, f"{VMS}/{vm.id}/setup")) == 2
    assert standin.purchases == 1


async def test_setup_validates_its_body(
    hostinger: HostingerClient, standin: HostingerStandIn
) -> None:
    standin.leave_initial_next_purchase()
    _, vm = await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-v"))
    with pytest.raises(HostingerError) as caught:
        await hostinger.setup_virtual_machine(
            vm.id, {**setup_for("aerelion-v"), "data_center_id": 1}
        )
    assert caught.value.errors == {"data_center_id": ["The selected data center id is invalid."]}
    assert (await hostinger.get_virtual_machine(vm.id)).state == "initial"


async def test_a_failed_setup_ends_in_error(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.error_next_setup()
    _, vm = await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-err"))
    failed, seen = await wait_for(hostinger, vm.id, "error", "running")
    assert (seen, failed.ipv4, failed.actions_lock) == (["creating", "error"], [], "unlocked")


async def test_a_vm_can_be_stuck_creating(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    standin.stuck_creating = True
    _, vm = await hostinger.purchase_virtual_machine(
        item_id=ITEM, setup=setup_for("aerelion-stuck")
    )
    await anyio.sleep(SETUP_SECONDS * 2)
    assert (await hostinger.get_virtual_machine(vm.id)).state == "creating"
    standin.stuck_creating = False
    assert (await hostinger.get_virtual_machine(vm.id)).state == "running"


async def test_restart_returns_an_action_and_cycles_the_state(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    _, vm = await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-rs"))
    with pytest.raises(HostingerError) as caught:
        await hostinger.restart_virtual_machine(vm.id)  # still creating: locked
    assert (caught.value.status, caught.value.retryable) == (422, False)
    await wait_for(hostinger, vm.id, "running")

    standin.setup_seconds = 0.6  # each phase long enough for polling to see it
    try:
        action = await hostinger.restart_virtual_machine(vm.id)
        assert schema_errors("VPS.V1.Action.ActionResource", action) == {}
        assert (action["name"], action["state"]) == ("restart", "created")
        _, seen = await wait_for(hostinger, vm.id, "running")
    finally:
        standin.setup_seconds = SETUP_SECONDS
    assert seen == ["stopping", "starting", "running"]
    done = await hostinger.get_action(vm.id, action["id"])
    assert (done["id"], done["state"]) == (action["id"], "success")
    assert posts(standin, f"{VMS}/{vm.id}/restart") == [None, None]


async def test_metrics_have_the_documented_shape(hostinger: HostingerClient) -> None:
    _, vm = await hostinger.purchase_virtual_machine(item_id=ITEM, setup=setup_for("aerelion-m"))
    now = datetime.now(UTC)

    metrics = await hostinger.get_metrics(vm.id, now - timedelta(hours=1), now)

    assert schema_errors("VPS.V1.Metrics.MetricsCollection", metrics) == {}
    assert set(metrics) == {
        "cpu_usage",
        "ram_usage",
        "disk_space",
        "outgoing_traffic",
        "incoming_traffic",
        "uptime",
    }
    assert metrics["cpu_usage"]["unit"] == "%"
    assert metrics["uptime"]["unit"] == "milliseconds"
    usage = metrics["ram_usage"]["usage"]
    assert 11 <= len(usage) <= 13
    assert all(key.isdigit() and isinstance(value, int) for key, value in usage.items())
    assert all(0 <= value <= 100 for value in metrics["cpu_usage"]["usage"].values())

    with pytest.raises(HostingerError) as caught:
        await hostinger.get_metrics(vm.id, now, now - timedelta(hours=1))
    assert caught.value.status == 422
    assert list(caught.value.errors) == ["date_to"]


# -- what goes over the wire --------------------------------------------------------------


async def test_requests_sent_validate_against_the_spec(
    standin: HostingerStandIn, hostinger: HostingerClient
) -> None:
    await hostinger.purchase_virtual_machine(
        item_id=ITEM, setup=setup_for("aerelion-spec"), payment_method_id=1327362
    )
    standin.leave_initial_next_purchase()
    _, vm = await hostinger.purchase_virtual_machine(
        item_id=ITEM, setup={**setup_for("aerelion-spec2"), "post_install_script_id": 6324}
    )
    await hostinger.setup_virtual_machine(vm.id, setup_for("aerelion-spec2"))

    schemas = {
        ("POST", VMS): "VPS.V1.VirtualMachine.PurchaseRequest",
        ("POST", f"{VMS}/{vm.id}/setup"): "VPS.V1.VirtualMachine.SetupRequest",
    }
    checked = 0
    for method, path, body in standin.requests:
        assert path.startswith(("/api/vps/v1/", "/api/billing/v1/"))
        if (method, path) in schemas:
            assert schema_errors(schemas[method, path], body) == {}
            checked += 1
    assert checked == 3
    assert set(posts(standin)[0]) == {"item_id", "payment_method_id", "setup"}
    assert "payment_method_id" not in posts(standin)[1]


async def test_headers_and_query_parameters_sent() -> None:
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(reply)
    async with HostingerClient("https://hostinger.test", TOKEN, transport=transport) as client:
        await client.get_metrics(
            7, datetime(2025, 5, 1, 2, tzinfo=UTC), datetime(2025, 6, 1, 0, 0, 0)
        )
    (request,) = seen
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert request.url.path == f"{VMS}/7/metrics"
    assert dict(request.url.params) == {
        "date_from": "2025-05-01T02:00:00Z",
        "date_to": "2025-06-01T00:00:00Z",
    }
    parameters = SPEC["paths"]["/api/vps/v1/virtual-machines/{virtualMachineId}/metrics"]["get"]
    assert {p["name"] for p in parameters["parameters"] if "name" in p} == set(request.url.params)


async def test_the_token_never_appears_in_errors(standin: HostingerStandIn) -> None:
    errors: list[HostingerError] = []
    assert standin.url is not None
    async with HostingerClient(standin.url, TOKEN, timeout=0.2, get_retries=0) as client:
        for arrange in (
            lambda: standin.fail_next("purchase", 500),
            lambda: standin.delay_next("purchase", 0.3),
            standin.lose_next_purchase_reply,
            lambda: None,  # 422: the setup below is invalid without the fault
        ):
            arrange()
            with pytest.raises(HostingerError) as caught:
                await client.purchase_virtual_machine(item_id="x", setup={"password": TOKEN[:5]})
            errors.append(caught.value)
    # A server that echoes the token back is scrubbed too.
    echo = httpx.MockTransport(
        lambda request: httpx.Response(
            403, json={"error": f"token {request.headers['authorization']} refused"}
        )
    )
    async with HostingerClient("https://hostinger.test", TOKEN, transport=echo) as client:
        with pytest.raises(HostingerError) as caught:
            await client.list_virtual_machines()
        errors.append(caught.value)
    assert caught.value.message == "token Bearer [token] refused"
    for error in errors:
        assert_no_token(error)


# -- reference data, the validator, safety --------------------------------------------------


async def test_reference_data_matches_the_spec(hostinger: HostingerClient) -> None:
    collections = {
        "VPS.V1.DataCenter.DataCenterCollection": await hostinger.list_data_centers(),
        "VPS.V1.Template.TemplateCollection": await hostinger.list_templates(),
        "Billing.V1.Catalog.CatalogItemCollection": await hostinger.list_catalog(),
        "Billing.V1.PaymentMethod.PaymentMethodCollection": await hostinger.list_payment_methods(),
    }
    for name, items in collections.items():
        assert items and schema_errors(name, items) == {}, name
    names = {dc["name"] for dc in collections["VPS.V1.DataCenter.DataCenterCollection"]}
    assert {"phx", "bos", "ams"} <= names
    templates = collections["VPS.V1.Template.TemplateCollection"]
    assert any("n8n" in template["name"] for template in templates)
    price_ids = {
        price["id"]
        for item in collections["Billing.V1.Catalog.CatalogItemCollection"]
        for price in item["prices"]
    }
    assert {f"hostingercom-vps-kvm{n}-usd-1m" for n in (1, 2, 4, 8)} <= price_ids
    assert await hostinger.list_catalog("DOMAIN") == []


def test_the_validator_understands_the_subset() -> None:
    purchase = "VPS.V1.VirtualMachine.PurchaseRequest"
    assert schema_errors(purchase, {"item_id": ITEM, "setup": setup_for("h")}) == {}
    assert schema_errors(purchase, []) == {"body": ["The request body field must be an object."]}
    assert schema_errors(purchase, {"item_id": 5, "setup": None}) == {
        "setup": ["The setup field is required."],
        "item_id": ["The item id field must be a string."],
    }
    assert schema_errors(
        purchase,
        {"item_id": ITEM, "setup": {**setup_for("h"), "template_id": True, "public_key": "k"}},
    ) == {
        "setup.template_id": ["The setup.template id field must be an integer."],
        "setup.public_key": ["The setup.public key field must be an object."],
    }
    assert schema_errors("VPS.V1.Action.ActionResource", {"state": "done"}) == {
        "state": ["The selected state is invalid."]
    }
    vm = {"id": 1, "state": "running", "ipv4": None, "template": None}
    assert schema_errors("VPS.V1.VirtualMachine.VirtualMachineResource", vm) == {}
    vm["ipv4"] = [{"id": 1, "address": 7}]
    assert schema_errors("VPS.V1.VirtualMachine.VirtualMachineResource", vm) == {
        "ipv4.0.address": ["The ipv4.0.address field must be a string."]
    }
    with pytest.raises(NotImplementedError):
        schema_errors({"type": "string", "pattern": "^a"}, "a")
    assert SPEC["info"]["version"] == "1.42.5"


def test_the_client_refuses_to_send_the_token_in_clear_text() -> None:
    with pytest.raises(ValueError, match="https"):
        HostingerClient("http://developers.hostinger.com", TOKEN)
    with pytest.raises(ValueError):
        HostingerClient("https://developers.hostinger.com", "")
    assert TOKEN not in repr(HostingerClient("https://developers.hostinger.com", TOKEN))


def test_the_standin_listens_on_loopback_only() -> None:
    with HostingerStandIn(token=TOKEN) as standin:
        assert standin.url is not None and standin.url.startswith("http://127.0.0.1:")
        assert standin._server is not None
        for server in standin._server.servers:
            for sock in server.sockets:
                assert sock.getsockname()[0] == "127.0.0.1"
        response = httpx.get(f"{standin.url}/api/vps/v1/nowhere")
        assert response.status_code == 404
        assert set(response.json()) == {"message", "correlation_id"}
    assert standin.url is None
