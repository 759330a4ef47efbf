"""Configuration problems that name the file, the line and the key path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vendhub.config.nodes import SourceLocation, display_path

KeyPath = tuple[str | int, ...]


def format_key_path(path: KeyPath) -> str:
    return " > ".join(str(step) for step in path)


@dataclass(frozen=True)
class ConfigIssue:
    """One thing wrong with the configuration.

    `config_dir` only decides how `file` is displayed: relative to it when inside it.
    """

    message: str
    file: Path | None
    line: int | None
    path: KeyPath = ()
    config_dir: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        plain_path = tuple(step if type(step) is int else str(step) for step in self.path)
        object.__setattr__(self, "path", plain_path)

    @classmethod
    def at(cls, message: str, source: SourceLocation | None, path: KeyPath = ()) -> ConfigIssue:
        """An issue located at `source` (which may be unknown)."""
        if source is None:
            return cls(message, None, None, path)
        return cls(message, source.file, source.line, path, source.config_root)

    def __str__(self) -> str:
        location = ""
        if self.file is not None:
            location = display_path(self.file, self.config_dir)
            if self.line is not None:
                location += f":{self.line}"
            location += ": "
        key_path = f"[{format_key_path(self.path)}] " if self.path else ""
        return f"{location}{key_path}{self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; `issues` says every reason found."""

    def __init__(self, issues: Iterable[ConfigIssue] | ConfigIssue) -> None:
        self.issues: list[ConfigIssue] = (
            [issues] if isinstance(issues, ConfigIssue) else list(issues)
        )
        super().__init__(self.issues)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
