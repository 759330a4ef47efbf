"""Who may use the hub: users with roles, their tokens, and machines' sign-in to the API.

``AuthManager`` (``manager.py``) is the one entry point: onboarding, sign-in with lockout,
access and refresh tokens, long-lived tokens, users. ``Identity`` (``identity.py``) is what a
validated token stands for, and answers "may this identity do that, on that machine?".
"""

from vendhub.auth.identity import Identity, IdentityKind
from vendhub.auth.manager import DATA_AUTH, AuthError, AuthManager, LoginLocked, get_auth
from vendhub.auth.roles import Permission, Role

__all__ = [
    "DATA_AUTH",
    "AuthError",
    "AuthManager",
    "Identity",
    "IdentityKind",
    "LoginLocked",
    "Permission",
    "Role",
    "get_auth",
]
