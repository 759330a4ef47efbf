"""Finds `!secret` values in the secrets.yaml files between a config file and the config root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.nodes import NodeDict, SourceLocation

SECRETS_FILE_NAME = "secrets.yaml"


@dataclass(frozen=True)
class SecretLookup:
    """The outcome of looking a secret up; `searched` lists every secrets.yaml considered."""

    found: bool
    value: Any
    searched: tuple[Path, ...]
    known_names: tuple[str, ...]


class SecretStore:
    """Loads each secrets.yaml once and answers lookups nearest-file first."""

    def __init__(self, config_root: Path, load_secrets_file: Callable[[Path], Any]) -> None:
        self._config_root = config_root
        self._load_secrets_file = load_secrets_file
        self._secrets_by_file: dict[Path, NodeDict] = {}

    def secrets_files_for(self, requesting_file: Path) -> tuple[Path, ...]:
        """secrets.yaml next to `requesting_file`, then in each parent up to the config root."""
        folder = requesting_file.parent
        if not folder.is_relative_to(self._config_root):
            return (folder / SECRETS_FILE_NAME, self._config_root / SECRETS_FILE_NAME)
        candidates = [folder / SECRETS_FILE_NAME]
        while folder != self._config_root:
            folder = folder.parent
            candidates.append(folder / SECRETS_FILE_NAME)
        return tuple(candidates)

    def lookup(self, name: str, requesting_file: Path) -> SecretLookup:
        """Raises ConfigError when a secrets.yaml on the way cannot be loaded."""
        searched = self.secrets_files_for(requesting_file)
        known_names: list[str] = []
        for secrets_file in searched:
            secrets = self._secrets_in(secrets_file)
            if name in secrets:
                return SecretLookup(True, secrets[name], searched, ())
            known_names.extend(str(key) for key in secrets)
        return SecretLookup(False, None, searched, tuple(known_names))

    def _secrets_in(self, secrets_file: Path) -> NodeDict:
        if secrets_file in self._secrets_by_file:
            return self._secrets_by_file[secrets_file]
        secrets = NodeDict()
        if secrets_file.is_file():
            loaded = self._load_secrets_file(secrets_file)
            if isinstance(loaded, NodeDict):
                secrets = loaded
            elif loaded is not None:
                location = SourceLocation(secrets_file, 1, self._config_root)
                raise ConfigError(
                    ConfigIssue.at(
                        f"{SECRETS_FILE_NAME} must be a mapping of secret names to values "
                        "('name: value' lines)",
                        location,
                    )
                )
        self._secrets_by_file[secrets_file] = secrets
        return secrets
