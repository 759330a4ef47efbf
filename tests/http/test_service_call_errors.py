"""How ``POST /api/services/<domain>/<service>`` answers a service that fails."""

from __future__ import annotations

from tests.http.conftest import Api
from vendhub.core.services import ServiceCall


async def test_a_service_that_times_out_inside_answers_504_naming_it(api: Api) -> None:
    """A TimeoutError without a message from inside a service (REST calls have no timeout of
    their own) is a 504 that names the service, not a 500 from formatting the message."""

    async def slow(call: ServiceCall) -> None:
        raise TimeoutError

    async def slow_with_reason(call: ServiceCall) -> None:
        raise TimeoutError("the board did not answer within 2 s")

    api.hub.services.async_register("test", "slow", slow)
    api.hub.services.async_register("test", "slow_with_reason", slow_with_reason)
    token = (await api.onboard())["access_token"]

    status, body, _ = await api.call("POST", "/api/services/test/slow", token=token, json={})
    assert status == 504, body
    assert body["error"]["message"] == "test.slow did not finish in time"
    status, body, _ = await api.call(
        "POST", "/api/services/test/slow_with_reason", token=token, json={}
    )
    assert status == 504, body
    assert body["error"]["message"] == "the board did not answer within 2 s"
