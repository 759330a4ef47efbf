"""The ``wallet`` payment provider: a customer pays from a prepaid account by QR or NFC token.

authorize holds the price on the account found by ``request.token`` (the hold is a database
row keyed by the vend session's id, so it survives a restart and a repeated authorize finds
it); capture takes it and awards points by the bonus rules; void releases it; refund gives a
captured amount back; status reads the rows. The n-th vend of a customer, when the rules
make it free, holds and takes nothing, and says so in ``Authorization.details["free_vend"]``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, ClassVar

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

from .accounts import (
    CurrencyMismatch,
    Hold,
    InsufficientFunds,
    UnknownAccount,
    Wallet,
    WalletError,
    WalletUnavailable,
)
from .tokens import InvalidToken

if TYPE_CHECKING:
    from collections.abc import Awaitable

_LOGGER = logging.getLogger(__name__)

PLATFORM = "wallet"
DATA_WALLET = "wallet"


def _reference(hold: Hold, session_id: str) -> str:
    return f"{hold.account_id}:{session_id}"


def _parse_reference(authorization: Authorization) -> tuple[int, str]:
    account, _, session_id = authorization.reference.partition(":")
    if authorization.provider != PLATFORM or not account.isdigit() or not session_id:
        raise PaymentError(
            f"{authorization.reference!r} of provider {authorization.provider!r} is not a "
            "wallet authorization"
        )
    return int(account), session_id


class WalletProvider(PaymentProvider):
    """Pays from a wallet account; see the module's docstring."""

    platform: ClassVar[str] = PLATFORM
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset({PaymentMethod.e_wallet})
    multi_vend: ClassVar[bool] = False

    def _wallet(self) -> Wallet:
        wallet: Wallet | None = self.hub.data.get(DATA_WALLET)
        if wallet is None:
            raise PaymentError("the wallet integration is not set up")
        return wallet

    async def async_start(self) -> None:
        self._wallet()

    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        wallet = self._wallet()
        if request.method is not PaymentMethod.e_wallet:
            raise PaymentError(f"the wallet serves e_wallet payments, not {request.method}")
        if not request.token:
            raise PaymentDeclined("unknown_token", "no wallet token was presented")
        progress({"step": "processing"})
        holding = asyncio.ensure_future(
            wallet.async_hold(
                request.token,
                request.session_id,
                request.amount.amount,
                request.amount.currency,
                request.context,
            )
        )
        try:
            hold = await self._settle(asyncio.shield(holding))
        except asyncio.CancelledError:
            await self._release_after_cancel(wallet, holding, request.session_id)
            raise
        _LOGGER.debug(
            "Wallet account %d: %s held for session %s%s",
            hold.account_id,
            hold.held,
            request.session_id,
            " (free vend)" if hold.free_vend else "",
        )
        return Authorization(
            provider=PLATFORM,
            method=PaymentMethod.e_wallet,
            reference=_reference(hold, request.session_id),
            amount=request.amount,
            details={
                "account_id": hold.account_id,
                "held": hold.held,
                "free_vend": hold.free_vend,
                "vend_number": hold.vend_number,
            },
        )

    @staticmethod
    async def _settle(holding: Awaitable[Hold]) -> Hold:
        try:
            return await holding
        except (UnknownAccount, InvalidToken) as error:
            raise PaymentDeclined("unknown_token", str(error)) from None
        except InsufficientFunds as error:
            raise PaymentDeclined("insufficient_funds", str(error)) from None
        except CurrencyMismatch as error:
            raise PaymentDeclined("declined", str(error)) from None
        except (WalletError, WalletUnavailable) as error:
            raise PaymentError(str(error)) from error

    async def _release_after_cancel(
        self, wallet: Wallet, holding: asyncio.Future[Hold], session_id: str
    ) -> None:
        """The customer cancelled while the hold was being written: undo it once it is."""
        try:
            hold = await holding
        except Exception:  # the hold failed: nothing was held
            return
        try:
            await wallet.async_void(hold.account_id, session_id)
        except (WalletError, WalletUnavailable):
            _LOGGER.exception(
                "Wallet account %d: the hold of cancelled session %s could not be released",
                hold.account_id,
                session_id,
            )

    async def async_capture(self, authorization: Authorization, amount: Money) -> None:
        account_id, session_id = _parse_reference(authorization)
        try:
            done = await self._wallet().async_capture(
                account_id, session_id, amount.amount, amount.currency
            )
        except (WalletError, WalletUnavailable) as error:
            raise PaymentError(str(error)) from error
        if not done.repeated:
            _LOGGER.debug(
                "Wallet account %d: %d taken for %s, %d points",
                account_id,
                done.amount,
                session_id,
                done.points,
            )

    async def async_void(self, authorization: Authorization) -> None:
        account_id, session_id = _parse_reference(authorization)
        try:
            await self._wallet().async_void(account_id, session_id)
        except (WalletError, WalletUnavailable) as error:
            raise PaymentError(str(error)) from error

    async def async_refund(self, authorization: Authorization, amount: Money) -> None:
        account_id, session_id = _parse_reference(authorization)
        try:
            await self._wallet().async_refund(
                account_id, session_id, amount.amount, amount.currency
            )
        except (WalletError, WalletUnavailable) as error:
            raise PaymentError(str(error)) from error

    async def async_release_session(self, session_id: str, amount: Money) -> None:
        """The hub died while this session's hold was asked for: release the hold (found by
        the session id on whichever account has it), or give back a capture."""
        try:
            settled = await self._wallet().async_release_session(session_id)
        except (WalletError, WalletUnavailable) as error:
            raise PaymentError(str(error)) from error
        for done in settled:
            if not done.repeated:
                _LOGGER.info(
                    "Wallet account %d: %d given back for session %s, cut off while authorizing",
                    done.account_id,
                    done.amount,
                    session_id,
                )

    async def async_status(self, authorization: Authorization) -> PaymentStatus:
        account_id, session_id = _parse_reference(authorization)
        try:
            state = await self._wallet().async_payment_state(account_id, session_id)
        except WalletUnavailable as error:
            raise PaymentError(str(error)) from error
        return PaymentStatus(state)
