"""One card declined again and again, at one machine or several."""

from __future__ import annotations

from typing import Any

from vendhub.anomaly.declines import CODE, fingerprint
from vendhub.const import EVENT_PAYMENT_DECLINED
from vendhub.core.hub import Hub

from .conftest import FakeClock, anomaly_alarms, start_anomaly

TOKEN = "tok_4242_visa_9f8e7d"
CARD = fingerprint(TOKEN)


async def decline(hub: Hub, machine_id: str = "lobby_1", **data: Any) -> None:
    payload = {"machine_id": machine_id, "amount": 150, "currency": "EUR", **data}
    payload.setdefault("card_token", TOKEN)
    hub.bus.async_fire(EVENT_PAYMENT_DECLINED, payload)
    await hub.async_block_till_done()


async def test_three_declines_of_one_card_raise(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock)
    await decline(hub, reason="insufficient_funds")
    clock.advance(minutes=2)
    await decline(hub, "gym_drinks", reason="insufficient_funds")
    assert anomaly_alarms(hub) == {}
    clock.advance(minutes=2)
    await decline(hub, "gym_drinks", reason="do_not_honor")
    alarm = anomaly_alarms(hub)[("lobby_1", f"{CODE}_{CARD}")]
    assert alarm.message == (
        f"A card (fingerprint {CARD}) was declined 3 times in 4 min at lobby_1, gym_drinks "
        "(last reason: do_not_honor): someone may be trying stolen cards."
    )
    assert TOKEN not in str(alarm.as_dict())
    clock.advance(minutes=1)
    await decline(hub, "gym_drinks")
    assert anomaly_alarms(hub)[("lobby_1", f"{CODE}_{CARD}")].count == 2


async def test_spread_out_declines_other_cards_and_no_token_do_not_raise(
    hub: Hub, clock: FakeClock
) -> None:
    await start_anomaly(hub, clock, {"declines": {"max_declines": 2, "window": "5min"}})
    await decline(hub)
    clock.advance(minutes=6)
    await decline(hub)  # the first is out of the window
    await decline(hub, card_token="tok_other_card")
    await decline(hub, card_token=None)
    await decline(hub, card_token=None)
    assert anomaly_alarms(hub) == {}
    await decline(hub, card_token=None, token=TOKEN)  # "token" is read too
    assert ("lobby_1", f"{CODE}_{CARD}") in anomaly_alarms(hub)
