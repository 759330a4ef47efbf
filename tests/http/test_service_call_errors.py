"""How ``POST /api/services/<domain>/<service>`` answers a service that fails."""

from __future__ import annotations

from tests.http.conftest import Api
from vendhub.core.services import ServiceCall
from vendhub.http.errors import MAX_MESSAGE


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


async def test_an_error_that_quotes_a_huge_input_is_cut(fleet_api: Api) -> None:
    """The simulator names the machine it does not have; 100,000 characters of it do not
    come back (the answer's message stops at MAX_MESSAGE characters)."""
    token = (await fleet_api.onboard())["access_token"]
    status, body, response = await fleet_api.call(
        "POST", "/api/services/simulator/restock", token=token, json={"machine_id": "a" * 100_000}
    )
    assert status == 400, body
    message = body["error"]["message"]
    assert len(message) == MAX_MESSAGE and message.endswith("…")
    assert "machine" in message
    assert response.content_length is None or response.content_length < 10_000
