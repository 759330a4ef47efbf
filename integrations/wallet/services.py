"""The ``wallet.*`` services: create accounts, top up, read balances, adjust points.

An account is named by ``token`` (as the customer presents it: scanned QR code, NFC UID) or
by ``account_id``. Money is whole minor units in the account's currency. A token in the
data or in a result is hidden from the audit log (its key is ``token``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv

from .accounts import MAX_DISPLAY_NAME_CHARS, MAX_SOURCE_ID_CHARS, Wallet, WalletError
from .tokens import MAX_TOKEN_CHARS, InvalidToken

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall

DOMAIN = "wallet"
SERVICES = ("create_account", "top_up", "balance", "adjust_points", "transactions")


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected the token as presented (the QR code's text or the NFC UID)")
    if len(value) > MAX_TOKEN_CHARS:
        raise vol.Invalid(f"expected at most {MAX_TOKEN_CHARS} characters")
    return value


def _positive_amount(value: Any) -> int:
    amount = cv.money_minor_units(value)
    if amount == 0:
        raise vol.Invalid("expected an amount of more than 0 minor units")
    return amount


def _points(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        raise vol.Invalid(
            f"expected a whole number of points to add (or, negative, to take), not 0: "
            f"got {value!r}"
        )
    return value


def _account_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise vol.Invalid(f"expected an account id (a whole number from 1), got {value!r}")
    return value


SOURCE_ID = vol.All(cv.string, vol.Length(min=1, max=MAX_SOURCE_ID_CHARS))
_ACCOUNT = {
    vol.Exclusive("token", "account", msg="give token or account_id, not both"): _token,
    vol.Exclusive("account_id", "account", msg="give token or account_id, not both"): (_account_id),
}


def _names_account(data: dict[str, Any]) -> dict[str, Any]:
    if "token" not in data and "account_id" not in data:
        raise vol.Invalid("name the account: token or account_id")
    return data


CREATE_SCHEMA = vol.Schema(
    {
        vol.Optional("token"): _token,
        vol.Optional("currency"): cv.currency,
        vol.Optional("display_name"): vol.All(cv.string, vol.Length(max=MAX_DISPLAY_NAME_CHARS)),
    }
)
TOP_UP_SCHEMA = vol.All(
    vol.Schema(
        {
            **_ACCOUNT,
            vol.Required("amount"): _positive_amount,
            vol.Optional("currency"): cv.currency,
            vol.Required("source_id"): SOURCE_ID,
        }
    ),
    _names_account,
)
BALANCE_SCHEMA = vol.All(vol.Schema(_ACCOUNT), _names_account)
ADJUST_POINTS_SCHEMA = vol.All(
    vol.Schema({**_ACCOUNT, vol.Required("points"): _points, vol.Required("source_id"): SOURCE_ID}),
    _names_account,
)
TRANSACTIONS_SCHEMA = vol.All(
    vol.Schema({**_ACCOUNT, vol.Optional("limit", default=50): vol.All(int, vol.Range(1, 500))}),
    _names_account,
)


def register_services(hub: Hub, wallet: Wallet) -> None:
    """Register the ``wallet.*`` services."""

    def where(call: ServiceCall) -> Any:
        try:
            return wallet.where(
                token=call.data.get("token"), account_id=call.data.get("account_id")
            )
        except InvalidToken as error:
            raise WalletError(str(error)) from None

    async def create_account(call: ServiceCall) -> dict[str, Any]:
        """Open an account; without a token one is made and returned, only this once."""
        view, generated = await wallet.async_create_account(
            call.data.get("token"), call.data.get("currency"), call.data.get("display_name")
        )
        result = view.as_dict()
        if generated is not None:
            result["token"] = generated
        return result

    async def top_up(call: ServiceCall) -> dict[str, Any]:
        """Add money to an account; a repeated source_id adds nothing."""
        view, repeated = await wallet.async_top_up(
            where(call),
            call.data["amount"],
            call.data["source_id"],
            call.data.get("currency"),
            call.context,
        )
        return {**view.as_dict(), "duplicate": repeated}

    async def balance(call: ServiceCall) -> dict[str, Any]:
        """An account's balance, held amount, points and vends."""
        return (await wallet.async_account(where(call))).as_dict()

    async def adjust_points(call: ServiceCall) -> dict[str, Any]:
        """Add points (or take them with a negative number); a repeated source_id does nothing."""
        view, repeated = await wallet.async_adjust_points(
            where(call), call.data["points"], call.data["source_id"], call.context
        )
        return {**view.as_dict(), "duplicate": repeated}

    async def transactions(call: ServiceCall) -> dict[str, Any]:
        """An account's latest transaction rows, newest first."""
        rows = await wallet.async_transactions(where(call), call.data["limit"])
        return {"items": rows}

    hub.services.async_register(DOMAIN, "create_account", create_account, CREATE_SCHEMA)
    hub.services.async_register(DOMAIN, "top_up", top_up, TOP_UP_SCHEMA)
    hub.services.async_register(DOMAIN, "balance", balance, BALANCE_SCHEMA, read_only=True)
    hub.services.async_register(DOMAIN, "adjust_points", adjust_points, ADJUST_POINTS_SCHEMA)
    hub.services.async_register(
        DOMAIN, "transactions", transactions, TRANSACTIONS_SCHEMA, read_only=True
    )
