"""Values loaded from YAML that remember where in which file they were written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsIndex


@dataclass(frozen=True)
class SourceLocation:
    """A 1-based line in a file. `config_root` only decides how the file is displayed."""

    file: Path
    line: int
    config_root: Path | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{display_path(self.file, self.config_root)}:{self.line}"


def display_path(file: Path, config_root: Path | None) -> str:
    """The file relative to the config folder when it lies inside it, else as given."""
    if config_root is not None and file.is_relative_to(config_root):
        return file.relative_to(config_root).as_posix()
    return str(file)


class NodeStr(str):
    """A string (value or mapping key) with the location it was written at."""

    __slots__ = ("source",)
    source: SourceLocation | None

    def __new__(cls, value: object = "", source: SourceLocation | None = None) -> NodeStr:
        instance = super().__new__(cls, value)
        instance.source = source
        return instance

    def __reduce__(self) -> tuple[Any, ...]:
        return (NodeStr, (str(self), self.source))


class NodeDict(dict[Any, Any]):
    """A mapping with its own location and the location of each key and value.

    Values that cannot carry attributes (int, float, bool, None) are located through
    `value_source(key)`. A value that came from `!secret` is marked with the secret's name,
    so that error messages never print it.
    """

    source: SourceLocation | None

    def __init__(self, *args: Any, source: SourceLocation | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        self._key_sources: dict[Any, SourceLocation] = {}
        self._value_sources: dict[Any, SourceLocation] = {}
        self._secret_names: dict[Any, str] = {}

    def key_source(self, key: Any) -> SourceLocation | None:
        """Where `key` itself was written."""
        return self._key_sources.get(key)

    def value_source(self, key: Any) -> SourceLocation | None:
        """Where the value of `key` was written (for `!include` and `!secret`: the tag)."""
        return self._value_sources.get(key)

    def secret_name(self, key: Any) -> str | None:
        """The name of the secret the value of `key` came from, if it came from one."""
        return self._secret_names.get(key)

    def set_located(
        self,
        key: Any,
        value: Any,
        *,
        key_source: SourceLocation | None,
        value_source: SourceLocation | None,
        secret_name: str | None = None,
    ) -> None:
        """Store `value` under `key` together with where both were written."""
        self[key] = value
        if key_source is not None:
            self._key_sources[key] = key_source
        if value_source is not None:
            self._value_sources[key] = value_source
        if secret_name is not None:
            self._secret_names[key] = secret_name

    def copy_entry_from(self, other: NodeDict, key: Any) -> None:
        """Copy `other[key]` into this mapping, keeping its locations."""
        self.set_located(
            key,
            other[key],
            key_source=other.key_source(key),
            value_source=other.value_source(key),
            secret_name=other.secret_name(key),
        )


class NodeList(list[Any]):
    """A list with its own location and the location of each item, as loaded."""

    source: SourceLocation | None

    def __init__(self, *args: Any, source: SourceLocation | None = None) -> None:
        super().__init__(*args)
        self.source = source
        self._item_sources: dict[int, SourceLocation] = {}
        self._secret_names: dict[int, str] = {}

    def _normalise(self, index: SupportsIndex) -> int:
        position = index.__index__()
        return position + len(self) if position < 0 else position

    def item_source(self, index: SupportsIndex) -> SourceLocation | None:
        """Where item `index` was written."""
        return self._item_sources.get(self._normalise(index))

    def secret_name(self, index: SupportsIndex) -> str | None:
        """The name of the secret item `index` came from, if it came from one."""
        return self._secret_names.get(self._normalise(index))

    def append_located(
        self, value: Any, *, source: SourceLocation | None, secret_name: str | None = None
    ) -> None:
        """Append `value` together with where it was written."""
        index = len(self)
        self.append(value)
        if source is not None:
            self._item_sources[index] = source
        if secret_name is not None:
            self._secret_names[index] = secret_name

    def extend_located(self, other: NodeList) -> None:
        """Append every item of `other`, keeping their locations."""
        for index, value in enumerate(other):
            self.append_located(
                value, source=other.item_source(index), secret_name=other.secret_name(index)
            )
