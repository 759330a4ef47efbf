"""The MDB card reader (cashless device #1) as a PaymentProvider, through the adapter's
cashless-master commands (``D,…``, answers ``d,…``).

Selection first ("always idle", ``D,2``, the default): the price goes to the reader with
``D,REQ``, the reader shows it and waits for the card. Authorization first (``D,1``): the
customer presents the card, the reader begins a session (``d,STATUS,CREDIT,<funds>``), then
the price goes with ``D,REQ``. Either way ``d,STATUS,RESULT,1,<amount>`` approves and
``d,STATUS,RESULT,-1`` denies. ``D,END`` is vend success (the adapter then completes the
session), ``D,END,-1`` vend failure: the reader reverses the payment. After vend success an
MDB reader cannot give money back, so ``async_refund`` says so.

The provider keeps its payments in memory. After a restart the reader may still hold the vend
the hub was waiting on (the adapter is powered by itself): ``async_release_session`` (an
authorize cut off) and ``async_void`` of a payment it no longer knows ask the reader's state
(``D,STATUS``) and end that vend: ``D,END,-1`` for an approval, ``D,REQ,-1`` for a request
still waiting for the card. At a start no other vend has begun, so the one the reader holds is
that session's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import voluptuous as vol

from vendhub.vending.money import Money
from vendhub.vending.payment import (
    Authorization,
    PaymentDeclined,
    PaymentError,
    PaymentMethod,
    PaymentProvider,
    PaymentRequest,
    PaymentStatus,
    ProgressCallback,
)

from .adapter import (
    DEFAULT_BAUDRATE,
    AdapterError,
    MdbAdapter,
    async_acquire_adapter,
    async_release_adapter,
)
from .scaling import NotExpressible, Scaling, currency_matches

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

MODE_ALWAYS_IDLE = "always_idle"
MODE_AUTHORIZE_FIRST = "authorize_first"
_MODE_COMMAND = {MODE_AUTHORIZE_FIRST: "D,1", MODE_ALWAYS_IDLE: "D,2"}

_positive = vol.All(vol.Coerce(float), vol.Range(min=0.01))

CASHLESS_OPTIONS: dict[Any, Any] = {
    vol.Required("port"): vol.All(str, vol.Length(min=1)),
    vol.Optional("baudrate", default=DEFAULT_BAUDRATE): vol.All(int, vol.Range(min=1200)),
    vol.Optional("mode", default=MODE_ALWAYS_IDLE): vol.In(list(_MODE_COMMAND)),
    # The reader's setup (scale factor, decimal places) is read with D,STATUS unless both
    # are given here.
    vol.Optional("scale_factor"): vol.All(int, vol.Range(min=1, max=255)),
    vol.Optional("decimal_places"): vol.All(int, vol.Range(min=0, max=6)),
    vol.Optional("reply_timeout", default=5.0): _positive,
    vol.Optional("card_timeout", default=60.0): _positive,
    # Slot code → MDB item number; unlisted codes: digits as is, "B3" → 203.
    vol.Optional("items", default=dict): {str: vol.All(int, vol.Range(min=0, max=0xFFFF))},
    # Firmware 3.8 and later take the item with vend success: D,END,<item>.
    vol.Optional("end_with_item", default=False): bool,
}


class _State(StrEnum):
    pending = "pending"
    authorized = "authorized"
    captured = "captured"
    voided = "voided"
    declined = "declined"
    failed = "failed"


_STATUS = {
    _State.pending: PaymentStatus.pending,
    _State.authorized: PaymentStatus.authorized,
    _State.captured: PaymentStatus.captured,
    _State.voided: PaymentStatus.voided,
    _State.declined: PaymentStatus.declined,
    _State.failed: PaymentStatus.failed,
}


@dataclass(slots=True)
class _CardPayment:
    authorization: Authorization | None
    item: int
    state: _State


def item_number(slot: str, items: Mapping[str, int]) -> int:
    """The MDB item number of slot ``slot``: configured, its digits, or row * 100 + column."""
    if slot in items:
        return items[slot]
    if slot.isdigit():
        number = int(slot)
    elif len(slot) >= 2 and slot[0].isalpha() and slot[0].isascii() and slot[1:].isdigit():
        number = (ord(slot[0].upper()) - ord("A") + 1) * 100 + int(slot[1:])
    else:
        raise PaymentError(
            f"slot {slot!r} has no MDB item number: give it one under the provider's 'items'"
        )
    if number > 0xFFFF:
        raise PaymentError(f"slot {slot!r} gives MDB item number {number}, above 65535")
    return number


def parse_reader_setup(line: str) -> tuple[int | None, Scaling]:
    """``d,STATUS,<state>,…,#,<level>,<currency>,<scale>,<decimals>,<timeout>,<flags>[,…]``.

    Returns the announced currency code and the reader's scaling.
    """
    _, _, tail = line.partition(",#,")
    fields = tail.split(",")
    if len(fields) < 4:
        raise AdapterError(f"the reader's setup cannot be read from {line!r}")
    try:
        currency_code = int(fields[1])
        scaling = Scaling(scale_factor=int(fields[2]), decimal_places=int(fields[3]))
    except ValueError as error:
        raise AdapterError(f"the reader's setup cannot be read from {line!r}: {error}") from None
    return currency_code, scaling


class MdbCashlessProvider(PaymentProvider):
    """A card reader on the MDB bus (cards, NFC phones and wallets all come through it)."""

    platform: ClassVar[str] = "mdb"
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset(
        {PaymentMethod.card, PaymentMethod.nfc, PaymentMethod.mobile_wallet}
    )
    multi_vend: ClassVar[bool] = False
    OPTIONS: ClassVar[Mapping[Any, Any]] = CASHLESS_OPTIONS

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        config = vol.Schema(CASHLESS_OPTIONS, extra=vol.REMOVE_EXTRA)(dict(options))
        super().__init__(hub, machine_id, config)
        self._config = config
        self._adapter: MdbAdapter | None = None
        self._enabled = False
        self._currency_code: int | None = None
        self._scaling: Scaling | None = None
        if "scale_factor" in config and "decimal_places" in config:
            self._scaling = Scaling(config["scale_factor"], config["decimal_places"])
        self._payments: dict[str, _CardPayment] = {}
        self._early_session: str | None = None
        self._lock = asyncio.Lock()

    @property
    def scaling(self) -> Scaling | None:
        """The reader's scale factor and decimal places, once known."""
        return self._scaling

    async def async_start(self) -> None:
        await self._async_adapter()

    async def async_stop(self) -> None:
        adapter, self._adapter = self._adapter, None
        self._enabled = False
        if adapter is not None:
            await async_release_adapter(self.hub, adapter)

    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        reference = f"mdb-{request.session_id}"
        known = self._payments.get(reference)
        if known is not None and known.state is _State.authorized and known.authorization:
            return known.authorization
        async with self._lock:
            await self._async_ensure_enabled()
            assert self._scaling is not None
            if currency_matches(self._currency_code, request.amount.currency) is False:
                raise PaymentError(
                    f"the card reader works in MDB currency {self._currency_code}, "
                    f"not {request.amount.currency}"
                )
            try:
                price_text = self._scaling.to_text(request.amount)
            except NotExpressible as error:
                raise PaymentError(f"the card reader cannot charge this price: {error}") from None
            item = item_number(request.item, self._config["items"])
            payment = _CardPayment(authorization=None, item=item, state=_State.pending)
            self._payments[reference] = payment
            self._drain_lines()
            try:
                approved = await self._async_vend(request, price_text, item, progress)
            except asyncio.CancelledError:
                payment.state = _State.voided
                await asyncio.shield(self._async_abort_vend())
                raise
            except TimeoutError:
                payment.state = _State.failed
                await asyncio.shield(self._async_abort_vend())
                raise PaymentError(
                    f"the card reader gave no result within {self._config['card_timeout']:g} s; "
                    "the vend request was cancelled and nothing was charged"
                ) from None
            except PaymentDeclined:
                payment.state = _State.declined
                raise
            except BaseException:
                payment.state = _State.failed
                raise
        authorization = Authorization(
            provider=self.platform,
            method=request.method,
            reference=reference,
            amount=request.amount,
            details={"item": item, "approved": approved, "mode": self._config["mode"]},
        )
        payment.authorization = authorization
        payment.state = _State.authorized
        return authorization

    async def async_capture(self, authorization: Authorization, amount: Money) -> None:
        payment = self._known(authorization)
        if payment.state is _State.captured:
            return
        if payment.state is not _State.authorized:
            raise PaymentError(f"cannot capture {authorization.reference}: it is {payment.state}")
        if amount != authorization.amount:
            raise PaymentError(
                f"an MDB card reader takes exactly the approved {authorization.amount}, "
                f"not {amount}"
            )
        command = f"D,END,{payment.item}" if self._config["end_with_item"] else "D,END"
        async with self._lock:
            await self._async_command_until_idle(command)
        payment.state = _State.captured

    async def async_void(self, authorization: Authorization) -> None:
        if authorization.reference not in self._payments:
            # Authorized before a restart: the reader may still hold the approval.
            async with self._lock:
                await self._async_end_reader_vend()
            self._payments[authorization.reference] = _CardPayment(
                authorization, int(authorization.details.get("item", 0)), _State.voided
            )
            return
        payment = self._known(authorization)
        if payment.state in (_State.voided, _State.declined):
            return
        if payment.state is _State.captured:
            raise PaymentError(
                f"{authorization.reference} was captured (vend success); it cannot be voided"
            )
        async with self._lock:
            await self._async_command_until_idle("D,END,-1")
        payment.state = _State.voided

    async def async_release_session(self, session_id: str, amount: Money) -> None:
        """End the vend the reader may still hold for an authorize cut off by a restart."""
        reference = f"mdb-{session_id}"
        known = self._payments.get(reference)
        if known is not None and known.state in (_State.voided, _State.declined, _State.failed):
            return
        async with self._lock:
            await self._async_end_reader_vend()
        if known is not None:
            known.state = _State.voided

    async def async_refund(self, authorization: Authorization, amount: Money) -> None:
        raise PaymentError(
            "an MDB card reader cannot refund after vend success: the payment "
            f"{authorization.reference} ({amount}) must be refunded through the card "
            "acquirer's back office"
        )

    async def async_status(self, authorization: Authorization) -> PaymentStatus:
        payment = self._payments.get(authorization.reference)
        return PaymentStatus.unknown if payment is None else _STATUS[payment.state]

    # --- the reader -------------------------------------------------------------------

    def _known(self, authorization: Authorization) -> _CardPayment:
        payment = self._payments.get(authorization.reference)
        if payment is None:
            raise PaymentError(
                f"the card reader provider does not know payment {authorization.reference}"
            )
        return payment

    async def _async_adapter(self) -> MdbAdapter:
        if self._adapter is None:
            self._adapter = await async_acquire_adapter(
                self.hub, self._config["port"], self._config["baudrate"]
            )
        return self._adapter

    def _drain_lines(self) -> None:
        """Drop old reader lines; keep a begin-session (card presented before selection)."""
        assert self._adapter is not None
        while not self._adapter.cashless_lines.empty():
            line = self._adapter.cashless_lines.get_nowait()
            if line.startswith("d,STATUS,CREDIT,"):
                self._early_session = line
            elif line.startswith(("d,STATUS,IDLE", "d,STATUS,RESULT,-1")):
                self._early_session = None
            else:
                _LOGGER.debug("stale reader line %r dropped", line)

    async def _async_next_line(self, timeout: float) -> str:
        assert self._adapter is not None
        async with asyncio.timeout(timeout):
            line = await self._adapter.cashless_lines.get()
        if line.startswith("d,ERR"):
            raise AdapterError(f"the MDB adapter refused a cashless command: {line}")
        return line

    async def _async_wait_for(self, prefix: str, timeout: float, waiting_for: str) -> str:
        """The next line starting with ``prefix``, skipping state lines in between."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self._async_next_line(timeout)
                    if line.startswith(prefix):
                        return line
                    _LOGGER.debug("reader line %r while waiting for %s", line, waiting_for)
        except TimeoutError:
            raise AdapterError(
                f"the MDB adapter did not report {waiting_for} within {timeout:g} s"
            ) from None

    async def _async_ensure_enabled(self) -> None:
        """``D,2`` (or ``D,1``) → ``d,STATUS,INIT``; ``D,STATUS`` for the setup when it is
        not configured; ``D,READER,1`` → ``d,STATUS,IDLE``."""
        if self._enabled:
            return
        adapter = await self._async_adapter()
        timeout = self._config["reply_timeout"]
        self._drain_lines()
        await adapter.async_send(_MODE_COMMAND[self._config["mode"]])
        try:
            await self._async_wait_for("d,STATUS,INIT", timeout, "the reader's initialisation")
        except AdapterError as error:
            # A master left on from before answers d,ERR,"cashless master is on".
            if "master is on" not in str(error):
                raise
        if self._scaling is None:
            await adapter.async_send("D,STATUS")
            while True:
                line = await self._async_wait_for("d,STATUS", timeout, "the reader's setup")
                if ",#," in line:
                    break
            self._currency_code, self._scaling = parse_reader_setup(line)
        await adapter.async_send("D,READER,1")
        await self._async_wait_for("d,STATUS,IDLE", timeout, "the reader enabled (IDLE)")
        self._enabled = True

    async def _async_vend(
        self, request: PaymentRequest, price_text: str, item: int, progress: ProgressCallback
    ) -> str:
        """Send the vend request and wait for the reader's answer; the approved amount."""
        assert self._adapter is not None and self._scaling is not None
        card_timeout = self._config["card_timeout"]
        progress({"step": "present_card"})
        if self._config["mode"] == MODE_AUTHORIZE_FIRST:
            await self._async_wait_begin_session(request, card_timeout)
        await self._adapter.async_send(f"D,REQ,{price_text},{item}")
        async with asyncio.timeout(card_timeout):
            while True:
                line = await self._async_next_line(card_timeout)
                if line == "d,STATUS,VEND":
                    continue
                if line.startswith("d,STATUS,RESULT,"):
                    break
                _LOGGER.debug("reader line %r while waiting for the vend result", line)
        fields = line.split(",")
        if fields[3] != "1":
            raise PaymentDeclined("declined", "the card reader denied the payment")
        approved = fields[4] if len(fields) > 4 else price_text
        try:
            approved_money = self._scaling.parse_text(approved, request.amount.currency)
        except NotExpressible as error:
            await self._async_command_until_idle("D,END,-1")
            raise AdapterError(f"the reader approved an unreadable amount: {error}") from None
        if approved_money != request.amount:
            await self._async_command_until_idle("D,END,-1")
            raise PaymentDeclined(
                "amount_mismatch",
                f"the reader approved {approved}, not {price_text}; the payment was reversed",
            )
        progress({"step": "processing"})
        return approved

    async def _async_wait_begin_session(self, request: PaymentRequest, timeout: float) -> None:
        """Authorization first: wait for ``d,STATUS,CREDIT,<funds>`` (card presented)."""
        assert self._scaling is not None
        line, self._early_session = self._early_session, None
        async with asyncio.timeout(timeout):
            while line is None or not line.startswith("d,STATUS,CREDIT,"):
                line = await self._async_next_line(timeout)
        funds = line.split(",")[3]
        if funds == "-1":
            return  # the reader does not say how much the card holds
        try:
            available = self._scaling.parse_text(funds, request.amount.currency)
        except NotExpressible:
            return
        if available < request.amount:
            await self._async_abort_vend()  # end the reader's session
            raise PaymentDeclined(
                "insufficient_funds", f"the card holds {funds}, the price is {request.amount}"
            )

    async def _async_command_until_idle(self, command: str) -> None:
        assert self._adapter is not None
        await self._adapter.async_send(command)
        try:
            await self._async_wait_for(
                "d,STATUS,IDLE", self._config["reply_timeout"], f"IDLE after {command}"
            )
        except AdapterError:
            self._enabled = False
            raise

    async def _async_reader_state(self) -> str | None:
        """The reader's state from ``D,STATUS`` (``IDLE``, ``VEND``, ``RESULT``, ...); None
        when the cashless master is off (the adapter was reset: the reader holds nothing)."""
        adapter = await self._async_adapter()
        self._drain_lines()
        await adapter.async_send("D,STATUS")
        try:
            while True:
                line = await self._async_wait_for(
                    "d,STATUS", self._config["reply_timeout"], "the reader's state"
                )
                if ",#," in line:
                    return line.split(",")[2]
        except AdapterError as error:
            if "refused" in str(error):
                return None
            raise

    async def _async_end_reader_vend(self) -> None:
        """End whatever vend the reader holds: reverse an approval (``D,END,-1``), cancel a
        request still waiting for the card (``D,REQ,-1``)."""
        for _ in range(2):
            state = await self._async_reader_state()
            if state == "RESULT":
                _LOGGER.warning("The card reader still held an approval; reversing it (D,END,-1)")
                await self._async_command_until_idle("D,END,-1")
            elif state in ("VEND", "CREDIT"):
                _LOGGER.warning("The card reader still held a vend request; cancelling it")
                await self._async_abort_vend()
            else:
                return
        state = await self._async_reader_state()
        if state in ("RESULT", "VEND", "CREDIT"):
            raise AdapterError(f"the card reader still holds a vend ({state}) after ending it")

    async def _async_abort_vend(self) -> None:
        """Cancel a pending vend request (``D,REQ,-1``); reverse an approval that raced in."""
        assert self._adapter is not None
        timeout = self._config["reply_timeout"]
        try:
            await self._adapter.async_send("D,REQ,-1")
            async with asyncio.timeout(timeout):
                while True:
                    line = await self._async_next_line(timeout)
                    if line.startswith("d,STATUS,RESULT,1"):
                        await self._async_command_until_idle("D,END,-1")
                        return
                    if line.startswith(("d,STATUS,RESULT,-1", "d,STATUS,IDLE")):
                        return
        except (TimeoutError, AdapterError) as error:
            # The reader's state is now unknown: initialise it again before the next vend.
            self._enabled = False
            _LOGGER.warning("The card reader did not confirm the cancelled vend: %s", error)
