"""Who may use the embedded broker, and for what: amqtt authentication and topic-ACL plugins.

Every user is a login from the hub's credential store (``vendhub.machine.credentials``): each
machine's username is its machine id, the hub's is ``vendhub-hub``. Nobody connects
anonymously. The topic rules are the ones the hub writes into Mosquitto's ACL file
(``vendhub.machine.mosquitto_files``: ``MACHINE_WRITES``, ``MACHINE_READS``, ``HUB_WRITES``),
so a fleet behaves the same on either broker:

- a machine publishes only ``<prefix>/<its id>/status|announce|telemetry|event|cmd_result``
  (its last will included) and subscribes only to ``<prefix>/<its id>/config|cmd/#|ack`` or
  narrower filters;
- the hub reads ``<prefix>/#`` and publishes ``<prefix>/+/config|cmd/#|ack|announce``.

Unlike Mosquitto, which grants a subscription and then delivers nothing, the embedded broker
refuses a subscription that reaches beyond the user's topics (SUBACK 0x80).

amqtt creates the plugins itself from dotted names; ``EmbeddedBroker`` passes them the one
``AccessPolicy`` they share through their ``Config``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from vendhub.machine import protocol
from vendhub.machine.credentials import (
    HUB_USERNAME,
    CredentialStore,
    FileStamp,
    credentials_file_stamp,
)
from vendhub.machine.mosquitto_files import HUB_WRITES, MACHINE_READS, MACHINE_WRITES

if TYPE_CHECKING:
    from amqtt.session import Session

    from vendhub.core.hub import Hub

AUTH_PLUGIN: Final = f"{__name__}.MachineAuthPlugin"
TOPIC_PLUGIN: Final = f"{__name__}.MachineTopicPlugin"


# ---- topic matching --------------------------------------------------------------------


def topic_matches(topic: str, pattern: str) -> bool:
    """Whether the topic name ``topic`` matches ``pattern`` (``+`` one level, ``#`` the rest)."""
    levels, wanted = topic.split("/"), pattern.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(levels) == len(wanted)


def filter_within(topic_filter: str, pattern: str) -> bool:
    """Whether every topic the subscription ``topic_filter`` can match also matches ``pattern``.

    ``vendhub/a/cmd/+`` is within ``vendhub/a/cmd/#``; ``vendhub/+/config`` is not within
    ``vendhub/a/config``, nor is ``vendhub/#`` within anything narrower than ``vendhub/#``.
    """
    levels, wanted = topic_filter.split("/"), pattern.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(levels):
            return False
        if level == "+":
            if levels[index] == "#":
                return False
            continue
        if levels[index] != level:  # a literal level covers only itself, not '+' or '#'
            return False
    return len(levels) == len(wanted)


# ---- the rules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserTopics:
    """The topic patterns one user may publish to and read."""

    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()


NOBODY: Final = UserTopics()


@dataclass(frozen=True)
class TopicRules:
    """The Mosquitto ACL of ``mosquitto_files``, as checks: per user, publish and read patterns."""

    prefix: str = protocol.DEFAULT_PREFIX

    def __post_init__(self) -> None:
        protocol.topic_filter(prefix=self.prefix)  # refuses wildcards and bad levels

    def for_user(self, username: str | None) -> UserTopics:
        """What ``username`` may do; nothing for anonymous and unknown kinds of names."""
        return _user_topics(self.prefix, username)

    def may_publish(self, username: str | None, topic: str) -> bool:
        return any(topic_matches(topic, p) for p in self.for_user(username).writes)

    def may_receive(self, username: str | None, topic: str) -> bool:
        return any(topic_matches(topic, p) for p in self.for_user(username).reads)

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        return any(filter_within(topic_filter, p) for p in self.for_user(username).reads)


@lru_cache(maxsize=4096)
def _user_topics(prefix: str, username: str | None) -> UserTopics:
    if username == HUB_USERNAME:
        return UserTopics(
            writes=tuple(f"{prefix}/+/{kind}" for kind in HUB_WRITES), reads=(f"{prefix}/#",)
        )
    if username is not None and protocol.is_machine_id(username):
        return UserTopics(
            writes=tuple(f"{prefix}/{username}/{kind}" for kind in MACHINE_WRITES),
            reads=tuple(f"{prefix}/{username}/{kind}" for kind in MACHINE_READS),
        )
    return NOBODY


# ---- credentials -----------------------------------------------------------------------


class CredentialChecker:
    """Checks logins against the hub's credential store, as it is on disk now.

    ``vendhub machine add``, ``--rotate`` and ``remove`` change the store file from another
    process; the checker reads it again whenever the file changed (a ``stat`` per login), so
    new machines can connect and removed ones cannot, without restarting the hub.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._store = CredentialStore(hub)
        self._stamp: FileStamp | None = None
        self._own: tuple[str, str] | None = None

    def accept_own_login(self, username: str, password: str) -> None:
        """Accept this login whatever the store says: the running hub's own.

        The hub keeps the password it logged in with in memory; a ``vendhub machine hub-user
        --rotate`` meanwhile (for a move to Mosquitto, say) must not lock the hub out of its
        own broker.
        """
        self._own = (username, password)

    @property
    def changed(self) -> bool:
        """Whether the store file changed since it was last read."""
        return credentials_file_stamp(self.hub) != self._stamp

    async def async_check(self, username: str, password: str) -> bool:
        """Whether the login is valid (PBKDF2 with 101 rounds: about 0.1 ms, in the loop)."""
        if self._own is not None and username == self._own[0]:
            return hmac.compare_digest(password.encode(), self._own[1].encode())
        self.refresh()
        return await self._store.async_check(username, password)

    def refresh(self) -> None:
        """Read the store again on the next check if its file changed."""
        stamp = credentials_file_stamp(self.hub)
        if stamp != self._stamp:
            self._store, self._stamp = CredentialStore(self.hub), stamp


# ---- the policy the plugins share ------------------------------------------------------


def _text(value: str | bytes | bytearray | None) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value


@dataclass
class AccessPolicy:
    """Logins and topic rules of one embedded broker."""

    rules: TopicRules
    checker: CredentialChecker

    async def async_login_refusal(self, session: Session) -> str | None:
        """Why the CONNECT of ``session`` is refused, or None when it is accepted."""
        username, password = _text(session.username), _text(session.password)
        if not username:
            return "no username: anonymous clients are not accepted"
        if password is None or not await self.checker.async_check(username, password):
            return f"wrong username or password (user {username!r})"
        if session.will_flag and not self.rules.may_publish(username, session.will_topic or ""):
            return f"user {username!r} may not publish its last will on {session.will_topic!r}"
        return None

    def allows(self, session: Session | None, topic: str | None, action: Action | None) -> bool:
        """Whether the session's user may ``action`` (publish, subscribe, receive) ``topic``."""
        if session is None or not topic:
            return False
        username = _text(session.username)
        if action == Action.PUBLISH:
            return self.rules.may_publish(username, topic)
        if action == Action.SUBSCRIBE:
            return self.rules.may_subscribe(username, topic)
        if action == Action.RECEIVE:
            return self.rules.may_receive(username, topic)
        return False


# ---- the amqtt plugins -----------------------------------------------------------------


class MachineAuthPlugin(BaseAuthPlugin):
    """Accepts a CONNECT only with a valid login and a last will the user may publish."""

    @dataclass
    class Config:
        policy: Any = None
        """The broker's ``AccessPolicy``."""

    async def authenticate(self, *, session: Session) -> bool | None:
        policy: AccessPolicy = self.config.policy
        return await policy.async_login_refusal(session) is None


class MachineTopicPlugin(BaseTopicPlugin):
    """Publish, subscribe and receive only on the user's own topics."""

    @dataclass
    class Config:
        policy: Any = None
        """The broker's ``AccessPolicy``."""

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        policy: AccessPolicy = self.config.policy
        return policy.allows(session, topic, action)


__all__ = [
    "AUTH_PLUGIN",
    "TOPIC_PLUGIN",
    "AccessPolicy",
    "CredentialChecker",
    "MachineAuthPlugin",
    "MachineTopicPlugin",
    "TopicRules",
    "filter_within",
    "topic_matches",
]
