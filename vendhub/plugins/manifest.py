"""Integration manifests: who an integration is and what it needs before it can run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voluptuous as vol

from vendhub.core.services import describe_invalid

IOT_CLASSES = ("local_push", "local_polling", "cloud_push", "cloud_polling", "calculated")

_DOMAIN = vol.All(str, vol.Match(r"^[a-z][a-z0-9_]*$", msg="must be lower-case a-z, 0-9 and _"))

MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("domain"): _DOMAIN,
        vol.Required("name"): vol.All(str, vol.Length(min=1)),
        vol.Required("version"): vol.All(str, vol.Length(min=1)),
        vol.Optional("dependencies", default=list): [_DOMAIN],
        vol.Optional("after_dependencies", default=list): [_DOMAIN],
        vol.Optional("requirements", default=list): [str],
        vol.Required("iot_class"): vol.In(IOT_CLASSES),
        vol.Optional("documentation"): str,
        vol.Optional("codeowners", default=list): [str],
        vol.Optional("setup_early", default=False): bool,
    }
)


class ManifestError(Exception):
    """A manifest is missing, unreadable or invalid."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """The validated contents of an integration's ``manifest.json``."""

    domain: str
    name: str
    version: str
    iot_class: str
    dependencies: tuple[str, ...] = ()
    after_dependencies: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    documentation: str | None = None
    # Set up before every integration that does not need it (the recorder: so it sees the
    # first states of everything else).
    setup_early: bool = False

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Manifest:
        """Validate ``data`` and build a Manifest; errors name ``where`` it came from."""
        try:
            valid = MANIFEST_SCHEMA(data)
        except vol.Invalid as error:
            raise ManifestError(f"{where}: invalid manifest: {describe_invalid(error)}") from None
        return cls(
            domain=valid["domain"],
            name=valid["name"],
            version=valid["version"],
            iot_class=valid["iot_class"],
            dependencies=tuple(valid["dependencies"]),
            after_dependencies=tuple(valid["after_dependencies"]),
            requirements=tuple(valid["requirements"]),
            documentation=valid.get("documentation"),
            setup_early=valid["setup_early"],
        )

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        """Read and validate ``path``."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{path}: manifest.json is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ManifestError(f"{path}: cannot read manifest: {error}") from None
        return cls.from_dict(data, str(path))
