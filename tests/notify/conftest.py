"""Real receivers for the notify tests: an SMTP server (aiosmtpd) and a local HTTP server
that records every request and answers as each test scripts it."""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.notify.const import DATA_NOTIFY
from vendhub.notify.runtime import NotifyRuntime
from vendhub_integrations.notify import vendhub_config_schema, vendhub_setup, vendhub_unload

# -- SMTP -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None

    def body(self, subtype: str = "plain") -> str:
        """The text of the ``text/<subtype>`` part, with Unix line ends."""
        part = self.message.get_body((subtype,))
        assert part is not None, f"no text/{subtype} part"
        return str(part.get_content()).replace("\r\n", "\n")


@dataclass
class MailHandler:
    """An aiosmtpd handler that keeps every message and refuses chosen recipients."""

    messages: list[Mail] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        self.messages.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        ok = (login, password) == ("driver-bot", "s3cret-smtp-pass")
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)


@dataclass
class SmtpServer:
    handler: MailHandler
    port: int


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on a free port; login as driver-bot / s3cret-smtp-pass works."""
    handler = MailHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=handler.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer(handler, port)
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (made with the openssl command)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def starttls_smtp_server(self_signed_cert: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """An SMTP server that requires STARTTLS before anything else."""
    cert, key = self_signed_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = MailHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=handler.authenticate,
    )
    controller.start()
    try:
        yield SmtpServer(handler, port)
    finally:
        controller.stop()


# -- HTTP -----------------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


Reply = Callable[[Received], web.StreamResponse | Awaitable[web.StreamResponse]]


class HttpReceiver:
    """Records requests; answers with the scripted replies in order, then ``default``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: deque[Reply] = deque()
        self.default: Reply = lambda _request: web.Response(text="ok")
        self.url = ""
        self._arrived = asyncio.Event()

    def then(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            await request.read(),
            time.monotonic(),
        )
        self.requests.append(received)
        self._arrived.set()
        reply = self.script.popleft() if self.script else self.default
        result = reply(received)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until ``count`` requests arrived; return them."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests


def status(code: int, text: str = "", **headers: str) -> Reply:
    return lambda _request: web.Response(status=code, text=text, headers=headers)


@pytest.fixture
async def http_server() -> AsyncIterator[HttpReceiver]:
    """A local HTTP server on a free port; ``.url`` is its base URL."""
    receiver = HttpReceiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}"
    yield receiver
    await runner.cleanup()


# -- the hub --------------------------------------------------------------------------------

StartNotify = Callable[[dict[str, Any]], Awaitable[NotifyRuntime]]


@pytest.fixture
async def start_notify(hub: Hub) -> AsyncIterator[StartNotify]:
    """Set the notify integration up through its hooks, as the hub does; unloaded after."""

    async def start(raw: dict[str, Any]) -> NotifyRuntime:
        config = vendhub_config_schema()(raw)
        assert await vendhub_setup(hub=hub, config=config) is True
        runtime = hub.data[DATA_NOTIFY]
        assert isinstance(runtime, NotifyRuntime)
        return runtime

    yield start
    if DATA_NOTIFY in hub.data:
        await vendhub_unload(hub=hub)


def capture(hub: Hub, event_type: str) -> list[Event]:
    """Every ``event_type`` event fired from now on."""
    seen: list[Event] = []
    hub.bus.async_listen(event_type, seen.append)
    return seen


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` (it may depend on the SMTP server's thread) until it holds."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling across threads on purpose
            await asyncio.sleep(0.01)


FAST_RETRY = {"first_delay": 0.05, "max_delay": 1}
