"""Loads YAML into located values, with Home Assistant's tags.

Tags: `!include file.yaml`, `!include_dir_named dir`, `!include_dir_list dir`,
`!include_dir_merge_list dir`, `!include_dir_merge_named dir`, `!secret name`,
`!env_var NAME [default]`. Every problem becomes a ConfigIssue that names the file and line;
as many as can be found in one pass are reported together.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vendhub.config.errors import ConfigError, ConfigIssue, KeyPath
from vendhub.config.nodes import (
    NodeDict,
    NodeList,
    NodeStr,
    SourceLocation,
    display_path,
)
from vendhub.config.secret_store import SECRETS_FILE_NAME, SecretStore

__all__ = [
    "NodeDict",
    "NodeList",
    "NodeStr",
    "SourceLocation",
    "VendHubLoader",
    "load_yaml",
]

# The C parser is several times faster and its nodes carry line numbers just the same.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SECRET_TAG = "!secret"

_TAB_HINT = "YAML does not allow tabs for indentation, use spaces"
_SYNTAX_HINTS = {
    "mapping values are not allowed": (
        "quote a value that contains ': ', or check the indentation of this key"
    ),
    "expected a single document": "a file holds one YAML document: remove the '---' line",
}


@dataclass
class _LoadContext:
    """What every file loaded for one configuration shares."""

    config_root: Path
    secrets: SecretStore = field(init=False)
    include_stack: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.secrets = SecretStore(self.config_root, self._load_secrets_file)

    def _load_secrets_file(self, secrets_file: Path) -> Any:
        return _load_file(secrets_file, self, base_path=(), include_site=None, secrets_file=True)

    def display(self, path: Path) -> str:
        return display_path(path, self.config_root)


class VendHubLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Composes a YAML document and builds NodeDict / NodeList / NodeStr from it."""

    def __init__(
        self,
        stream: str,
        file: Path | None = None,
        *,
        context: _LoadContext | None = None,
        base_path: KeyPath = (),
        first_index: int = 0,
        secrets_file: bool = False,
    ) -> None:
        super().__init__(stream)
        self._text = stream if isinstance(stream, str) else ""
        self.file = (file or Path(getattr(stream, "name", "<string>"))).absolute()
        self._context = context or _LoadContext(self.file.parent)
        self._base_path = base_path
        self._first_index = first_index
        self._secrets_file = secrets_file
        self._issues: list[ConfigIssue] = []
        self._nodes_in_progress: set[int] = set()
        self._tag_handlers: dict[str, Callable[[yaml.ScalarNode, KeyPath], Any]] = {
            "!include": self._include,
            "!include_dir_named": self._include_dir_named,
            "!include_dir_list": self._include_dir_list,
            "!include_dir_merge_list": self._include_dir_merge_list,
            "!include_dir_merge_named": self._include_dir_merge_named,
            _SECRET_TAG: self._secret,
            "!env_var": self._env_var,
        }

    # -- document ---------------------------------------------------------------------------

    def get_single_data(self) -> Any:
        """The document's value; an empty document is an empty NodeDict."""
        try:
            node = self.get_single_node()
        except yaml.MarkedYAMLError as err:
            raise ConfigError(self._syntax_issue(err)) from None
        except yaml.reader.ReaderError as err:
            line = self._text[: err.position].count("\n") + 1
            raise ConfigError(
                ConfigIssue.at(
                    f"invalid YAML: {err.reason} (character {err.character!r})",
                    self._location_of_line(line),
                )
            ) from None
        except yaml.YAMLError as err:
            raise ConfigError(
                ConfigIssue.at(f"invalid YAML: {err}", self._location_of_line(1))
            ) from None
        if node is None:
            return NodeDict(source=self._location_of_line(1))
        value = self._build(node, self._base_path, is_root=True)
        if self._issues:
            raise ConfigError(dict.fromkeys(self._issues))
        return value

    def _syntax_issue(self, err: yaml.MarkedYAMLError) -> ConfigIssue:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        message = f"invalid YAML at column {mark.column + 1}: {problem}" if mark else problem
        if err.problem and err.context and err.context_mark and err.context_mark != mark:
            message += f" ({err.context} that started at line {err.context_mark.line + 1})"
        hint = next((text for start, text in _SYNTAX_HINTS.items() if start in problem), None)
        if mark and self._character_at(mark.line, mark.column) == "\t":
            hint = _TAB_HINT
        if hint is not None:
            message += f"; {hint}"
        return ConfigIssue.at(message, self._location_of_line(mark.line + 1 if mark else 1))

    def _character_at(self, line: int, column: int) -> str:
        lines = self._text.splitlines()
        if line < len(lines) and column < len(lines[line]):
            return lines[line][column]
        return ""

    # -- locations and issues ---------------------------------------------------------------

    def _location_of_line(self, line: int) -> SourceLocation:
        return SourceLocation(self.file, line, self._context.config_root)

    def _location(self, node: yaml.Node) -> SourceLocation:
        return self._location_of_line(node.start_mark.line + 1)

    def _add_issue(self, message: str, node: yaml.Node, path: KeyPath) -> None:
        self._issues.append(ConfigIssue.at(message, self._location(node), path))

    # -- building values --------------------------------------------------------------------

    def _build(self, node: yaml.Node, path: KeyPath, *, is_root: bool = False) -> Any:
        handler = self._tag_handlers.get(node.tag)
        if handler is not None:
            if not isinstance(node, yaml.ScalarNode):
                self._add_issue(
                    f"{node.tag} takes a single value, not a list or mapping", node, path
                )
                return None
            return handler(node, path)
        if node.tag.startswith("!"):
            self._add_issue(self._unknown_tag_message(node.tag), node, path)
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return NodeStr(node.value, self._location(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag in (
            _MAP_TAG,
            _SEQ_TAG,
        ):
            if id(node) in self._nodes_in_progress:
                self._add_issue("an alias (*name) refers to a value that contains it", node, path)
                return None
            self._nodes_in_progress.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._build_mapping(node, path)
                return self._build_sequence(node, path, self._first_index if is_root else 0)
            finally:
                self._nodes_in_progress.discard(id(node))
        try:
            return self.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as err:
            problem = "this value" if self._secrets_file else err.problem
            self._add_issue(f"cannot read {problem}", node, path)
            return None

    def _unknown_tag_message(self, tag: str) -> str:
        known = sorted(self._tag_handlers)
        message = f"unknown tag '{tag}'"
        close = difflib.get_close_matches(tag, known, n=1)
        if close:
            return f"{message}, did you mean '{close[0]}'?"
        return f"{message}; known tags: {', '.join(known)}"

    def _build_mapping(self, node: yaml.MappingNode, path: KeyPath) -> NodeDict:
        result = NodeDict(source=self._location(node))
        first_lines: dict[Any, int] = {}
        merge_value_nodes: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merge_value_nodes.append(value_node)
                continue
            key = self._build(key_node, path)
            if not _is_hashable(key):
                self._add_issue(
                    "a mapping key must be a single value, not a mapping or list", key_node, path
                )
                continue
            line = key_node.start_mark.line + 1
            if key in first_lines:
                self._add_issue(
                    f"duplicate key {key!r}: it is set at line {first_lines[key]} and again "
                    f"at line {line}; keep only one (YAML would silently use the last)",
                    key_node,
                    path,
                )
                continue
            first_lines[key] = line
            value = self._build(value_node, (*path, key))
            result.set_located(
                key,
                value,
                key_source=self._location(key_node),
                value_source=self._location(value_node),
                secret_name=self._secret_name_of(value_node),
            )
        for merge_value_node in merge_value_nodes:
            self._merge_into(result, merge_value_node, path)
        return result

    def _merge_into(self, result: NodeDict, merge_value_node: yaml.Node, path: KeyPath) -> None:
        """`<<: *defaults` or `<<: [*a, *b]`: keys written in the mapping itself win."""
        if isinstance(merge_value_node, yaml.SequenceNode):
            merged_nodes = list(merge_value_node.value)
        else:
            merged_nodes = [merge_value_node]
        for merged_node in merged_nodes:
            merged = self._build(merged_node, path)
            if not isinstance(merged, NodeDict):
                self._add_issue(
                    "'<<' merges mappings: write '<<: *name' where '&name' marks a mapping",
                    merged_node,
                    path,
                )
                continue
            for key in merged:
                if key not in result:
                    result.copy_entry_from(merged, key)

    def _build_sequence(self, node: yaml.SequenceNode, path: KeyPath, first_index: int) -> NodeList:
        result = NodeList(source=self._location(node))
        for index, item_node in enumerate(node.value, start=first_index):
            result.append_located(
                self._build(item_node, (*path, index)),
                source=self._location(item_node),
                secret_name=self._secret_name_of(item_node),
            )
        return result

    @staticmethod
    def _secret_name_of(node: yaml.Node) -> str | None:
        if node.tag == _SECRET_TAG and isinstance(node, yaml.ScalarNode):
            return str(node.value).strip()
        return None

    # -- !include ---------------------------------------------------------------------------

    def _tag_argument(self, node: yaml.ScalarNode, path: KeyPath, example: str) -> str | None:
        argument = str(node.value).strip()
        if not argument:
            self._add_issue(
                f"{node.tag} needs an argument, e.g. '{node.tag} {example}'", node, path
            )
            return None
        return argument

    def _load_nested(self, file: Path, node: yaml.Node, path: KeyPath, first_index: int = 0) -> Any:
        try:
            return _load_file(
                file.resolve(),
                self._context,
                base_path=path,
                include_site=self._location(node),
                first_index=first_index,
            )
        except ConfigError as err:
            self._issues.extend(err.issues)
            return None

    def _include(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        argument = self._tag_argument(node, path, "machines.yaml")
        if argument is None:
            return None
        target = self.file.parent / argument
        if target.is_dir():
            self._add_issue(
                f"!include '{argument}' is a folder; use !include_dir_named, !include_dir_list, "
                "!include_dir_merge_list or !include_dir_merge_named for folders",
                node,
                path,
            )
            return None
        if not target.is_file():
            message = f"!include: file '{argument}' not found (looked for {self._display(target)})"
            siblings = [file.name for file in target.parent.glob("*.yaml")]
            close = difflib.get_close_matches(target.name, siblings, n=1)
            if close:
                message += f", did you mean '{close[0]}'?"
            self._add_issue(message, node, path)
            return None
        return self._load_nested(target, node, path)

    def _include_dir_files(self, node: yaml.ScalarNode, path: KeyPath) -> list[Path] | None:
        argument = self._tag_argument(node, path, "machines")
        if argument is None:
            return None
        directory = self.file.parent / argument
        if not directory.is_dir():
            state = "is a file, not a folder" if directory.exists() else "not found"
            self._add_issue(
                f"{node.tag}: folder '{argument}' {state} (looked for {self._display(directory)})",
                node,
                path,
            )
            return None
        return _yaml_files_in(directory)

    def _include_dir_named(self, node: yaml.ScalarNode, path: KeyPath) -> NodeDict | None:
        files = self._include_dir_files(node, path)
        if files is None:
            return None
        result = NodeDict(source=self._location(node))
        file_by_name: dict[str, Path] = {}
        for file in files:
            name = file.stem
            if name in file_by_name:
                self._add_issue(
                    f"{node.tag}: two files are named '{name}': "
                    f"{self._display(file_by_name[name])} and {self._display(file)}; rename one",
                    node,
                    path,
                )
                continue
            file_by_name[name] = file
            value = self._load_nested(file, node, (*path, name))
            file_start = self._file_start(file)
            result.set_located(
                NodeStr(name, file_start),
                value,
                key_source=file_start,
                value_source=getattr(value, "source", None) or file_start,
            )
        return result

    def _include_dir_list(self, node: yaml.ScalarNode, path: KeyPath) -> NodeList | None:
        files = self._include_dir_files(node, path)
        if files is None:
            return None
        result = NodeList(source=self._location(node))
        for file in files:
            value = self._load_nested(file, node, (*path, len(result)))
            result.append_located(
                value, source=getattr(value, "source", None) or self._file_start(file)
            )
        return result

    def _include_dir_merge_list(self, node: yaml.ScalarNode, path: KeyPath) -> NodeList | None:
        files = self._include_dir_files(node, path)
        if files is None:
            return None
        result = NodeList(source=self._location(node))
        for file in files:
            value = self._load_nested(file, node, path, first_index=len(result))
            if isinstance(value, NodeList):
                result.extend_located(value)
            elif value not in (None, {}):
                self._issues.append(
                    ConfigIssue.at(
                        f"{node.tag} needs a list in every file ('- item' lines), "
                        f"got {_kind_of(value)}",
                        getattr(value, "source", None) or self._file_start(file),
                        path,
                    )
                )
        return result

    def _include_dir_merge_named(self, node: yaml.ScalarNode, path: KeyPath) -> NodeDict | None:
        files = self._include_dir_files(node, path)
        if files is None:
            return None
        result = NodeDict(source=self._location(node))
        for file in files:
            value = self._load_nested(file, node, path)
            if value is None:
                continue
            if not isinstance(value, NodeDict):
                self._issues.append(
                    ConfigIssue.at(
                        f"{node.tag} needs a mapping in every file ('key: value' lines), "
                        f"got {_kind_of(value)}",
                        getattr(value, "source", None) or self._file_start(file),
                        path,
                    )
                )
                continue
            for key in value:
                if key in result:
                    self._issues.append(
                        ConfigIssue.at(
                            f"duplicate key {key!r}: also set at {result.key_source(key)}; "
                            "keep only one",
                            value.key_source(key),
                            path,
                        )
                    )
                    continue
                result.copy_entry_from(value, key)
        return result

    def _file_start(self, file: Path) -> SourceLocation:
        return SourceLocation(file.resolve(), 1, self._context.config_root)

    def _display(self, path: Path) -> str:
        return self._context.display(path.resolve())

    # -- !secret and !env_var ---------------------------------------------------------------

    def _secret(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        if self._secrets_file:
            self._add_issue(f"!secret cannot be used inside {SECRETS_FILE_NAME}", node, path)
            return None
        name = self._tag_argument(node, path, "mqtt_password")
        if name is None:
            return None
        try:
            lookup = self._context.secrets.lookup(name, self.file)
        except ConfigError as err:
            self._issues.extend(err.issues)
            return None
        if not lookup.found:
            searched = ", ".join(
                self._display(file) + ("" if file.is_file() else " (no such file)")
                for file in lookup.searched
            )
            message = f"secret '{name}' not found; searched {searched}"
            close = difflib.get_close_matches(name, lookup.known_names, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
            else:
                message += f"; add '{name}: ...' to {self._display(lookup.searched[-1])}"
            self._add_issue(message, node, path)
            return None
        if isinstance(lookup.value, str):
            return NodeStr(lookup.value, self._location(node))
        return copy.deepcopy(lookup.value)

    def _env_var(self, node: yaml.ScalarNode, path: KeyPath) -> NodeStr | None:
        argument = self._tag_argument(node, path, "MQTT_HOST")
        if argument is None:
            return None
        name, _, default = argument.partition(" ")
        value = os.environ.get(name)
        if value is None:
            if not default.strip():
                self._add_issue(
                    f"environment variable '{name}' is not set; set it, or give a default: "
                    f"'!env_var {name} <default>'",
                    node,
                    path,
                )
                return None
            value = default.strip()
        return NodeStr(value, self._location(node))


def _without_base_60_numbers(loader: type[yaml.SafeLoader]) -> None:
    """Read ``22:00`` as the text it looks like, not as YAML 1.1's base-60 number 1320.

    Operators write times of day; none of them means a sexagesimal integer or float.
    """
    int_pattern = re.compile(
        r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    )
    float_pattern = re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    )
    replacements = {"tag:yaml.org,2002:int": int_pattern, "tag:yaml.org,2002:float": float_pattern}
    resolvers = {}
    for first, entries in loader.yaml_implicit_resolvers.items():
        resolvers[first] = [(tag, replacements.get(tag, pattern)) for tag, pattern in entries]
    loader.yaml_implicit_resolvers = resolvers


_without_base_60_numbers(VendHubLoader)


def _is_hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a single value ({type(value).__name__})"


def _yaml_files_in(directory: Path) -> list[Path]:
    """*.yaml below `directory` (hidden entries and secrets.yaml skipped), in path order."""
    found: list[Path] = []
    for folder, subfolders, file_names in os.walk(directory):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(
            Path(folder) / name
            for name in file_names
            if name.endswith(".yaml") and not name.startswith(".") and name != SECRETS_FILE_NAME
        )
    return sorted(found, key=lambda file: file.relative_to(directory).parts)


def _load_file(
    file: Path,
    context: _LoadContext,
    *,
    base_path: KeyPath,
    include_site: SourceLocation | None,
    first_index: int = 0,
    secrets_file: bool = False,
) -> Any:
    """Load one already resolved file within `context`; raises ConfigError."""
    if file in context.include_stack:
        cycle = [*context.include_stack[context.include_stack.index(file) :], file]
        raise ConfigError(
            ConfigIssue.at(
                "include cycle: "
                + " -> ".join(context.display(step) for step in cycle)
                + "; remove one of these includes",
                include_site,
                base_path,
            )
        )
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(
            ConfigIssue.at(
                f"cannot read {context.display(file)}: {err.strerror or err}",
                include_site,
                base_path,
            )
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            ConfigIssue.at(
                f"this file is not UTF-8 text (byte 0x{raw[err.start]:02x}); save it as UTF-8",
                SourceLocation(file, line, context.config_root),
            )
        ) from None
    context.include_stack.append(file)
    loader = VendHubLoader(
        text,
        file,
        context=context,
        base_path=base_path,
        first_index=first_index,
        secrets_file=secrets_file,
    )
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
        context.include_stack.pop()


def load_yaml(path: Path, *, config_root: Path | None = None) -> Any:
    """Load `path` with all tags resolved; an empty file gives an empty NodeDict.

    `config_root` (default: the file's folder) is where the search for secrets.yaml stops
    and what file names in messages are shown relative to. Raises ConfigError.
    """
    file = Path(path).resolve()
    root = Path(config_root).resolve() if config_root is not None else file.parent
    if not file.is_file():
        state = "is a folder, not a file" if file.is_dir() else "does not exist"
        raise ConfigError(ConfigIssue(f"{file} {state}", file, None, config_dir=root))
    return _load_file(file, _LoadContext(root), base_path=(), include_site=None)
