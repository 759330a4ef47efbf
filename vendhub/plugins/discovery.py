"""Finding integrations: built-in ones, ``<config>/custom_integrations/``, and entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import types
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from vendhub.plugins.manifest import Manifest, ManifestError

_LOGGER = logging.getLogger(__name__)

BUILTIN_PACKAGE = "vendhub_integrations"
CUSTOM_PACKAGE = "vendhub_custom_integrations"
CUSTOM_FOLDER = "custom_integrations"
ENTRY_POINT_GROUP = "vendhub.integrations"


class IntegrationSource(StrEnum):
    """Where an integration was found."""

    builtin = "built-in"
    custom = "custom"
    entry_point = "entry point"


class IntegrationError(Exception):
    """An integration cannot be imported or used."""


@dataclass
class Integration:
    """A discovered integration: its manifest and how to import its module."""

    manifest: Manifest
    source: IntegrationSource
    module_name: str
    folder: Path | None = None
    module: types.ModuleType | None = field(default=None, repr=False)

    @property
    def domain(self) -> str:
        """The integration's domain, as in configuration.yaml."""
        return self.manifest.domain

    def describe(self) -> str:
        """One line naming the integration and where it came from."""
        where = f" ({self.folder})" if self.source is IntegrationSource.custom else ""
        return f"{self.domain} {self.manifest.version} [{self.source}]{where}"

    def import_module(self) -> types.ModuleType:
        """Import the integration's module (blocking: run it in an executor)."""
        if self.module is not None:
            return self.module
        if self.source is IntegrationSource.custom:
            self.module = _import_custom(self.module_name, self.folder)
        else:
            self.module = importlib.import_module(self.module_name)
        return self.module


@dataclass
class Discovery:
    """Every integration found, and every problem met while looking."""

    integrations: dict[str, Integration] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def discover_integrations(config_dir: Path | None) -> Discovery:
    """Find every integration; custom ones override built-in ones of the same domain.

    Blocking (reads files, imports entry points): call it in an executor or before the loop.
    """
    found = Discovery()
    for integration in _builtin(found.problems):
        found.integrations[integration.domain] = integration
    for integration in _entry_points(found.problems):
        _add_override(found, integration)
    if config_dir is not None:
        for integration in _custom(config_dir / CUSTOM_FOLDER, found.problems):
            _add_override(found, integration)
    return found


def _add_override(found: Discovery, integration: Integration) -> None:
    existing = found.integrations.get(integration.domain)
    if existing is not None:
        _LOGGER.warning("Integration %s overrides %s", integration.describe(), existing.describe())
    found.integrations[integration.domain] = integration


def _builtin(problems: list[str]) -> list[Integration]:
    package = importlib.import_module(BUILTIN_PACKAGE)
    result = []
    for folder_name in package.__path__:
        for folder in sorted(Path(folder_name).iterdir()):
            manifest_path = folder / "manifest.json"
            if not manifest_path.is_file():
                continue
            try:
                manifest = Manifest.from_file(manifest_path)
            except ManifestError as error:
                problems.append(str(error))
                continue
            result.append(
                Integration(
                    manifest, IntegrationSource.builtin, f"{BUILTIN_PACKAGE}.{folder.name}", folder
                )
            )
    return result


def _custom(root: Path, problems: list[str]) -> list[Integration]:
    if not root.is_dir():
        return []
    result = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "__")):
            continue
        try:
            manifest = Manifest.from_file(folder / "manifest.json")
        except ManifestError as error:
            problems.append(f"custom integration {folder.name}: {error}")
            continue
        if manifest.domain != folder.name:
            problems.append(
                f"{folder / 'manifest.json'}: domain {manifest.domain!r} does not match its "
                f"folder name {folder.name!r}; rename one so they agree"
            )
            continue
        if not (folder / "__init__.py").is_file():
            problems.append(f"custom integration {folder.name}: {folder}/__init__.py is missing")
            continue
        result.append(
            Integration(
                manifest, IntegrationSource.custom, f"{CUSTOM_PACKAGE}.{folder.name}", folder
            )
        )
    return result


def _entry_points(problems: list[str]) -> list[Integration]:
    result = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {entry_point.name} = {entry_point.value}"
        try:
            module = entry_point.load()
        except Exception as error:
            problems.append(f"{where}: import failed: {type(error).__name__}: {error}")
            continue
        if not isinstance(module, types.ModuleType):
            problems.append(f"{where}: must name a module, not {type(module).__name__}")
            continue
        try:
            manifest = _entry_point_manifest(module, where)
        except ManifestError as error:
            problems.append(str(error))
            continue
        if manifest.domain != entry_point.name:
            problems.append(
                f"{where}: the entry point's name must be the domain {manifest.domain!r}"
            )
            continue
        folder = Path(module.__file__).parent if module.__file__ else None
        result.append(
            Integration(manifest, IntegrationSource.entry_point, module.__name__, folder, module)
        )
    return result


def _entry_point_manifest(module: types.ModuleType, where: str) -> Manifest:
    declared: Any = getattr(module, "MANIFEST", None)
    if declared is not None:
        return Manifest.from_dict(declared, where)
    if module.__file__:
        manifest_path = Path(module.__file__).parent / "manifest.json"
        if manifest_path.is_file():
            return Manifest.from_file(manifest_path)
    raise ManifestError(f"{where}: no MANIFEST attribute and no manifest.json beside the module")


def _import_custom(module_name: str, folder: Path | None) -> types.ModuleType:
    if folder is None:
        raise IntegrationError(f"{module_name}: custom integration without a folder")
    if CUSTOM_PACKAGE not in sys.modules:
        namespace = types.ModuleType(CUSTOM_PACKAGE)
        namespace.__path__ = []
        sys.modules[CUSTOM_PACKAGE] = namespace
    init_file = folder / "__init__.py"
    cached = sys.modules.get(module_name)
    if cached is not None and Path(cached.__file__ or "") == init_file:
        return cached
    for name in [n for n in sys.modules if n == module_name or n.startswith(f"{module_name}.")]:
        del sys.modules[name]  # the same domain from another config folder
    spec = importlib.util.spec_from_file_location(
        module_name, init_file, submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise IntegrationError(f"{folder}: cannot be imported as a package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def missing_requirements(manifest: Manifest) -> list[str]:
    """Return the manifest's Python requirements that are not installed in a matching version."""
    missing = []
    for spec in manifest.requirements:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            missing.append(f"{spec} (not a valid requirement)")
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{spec} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(
            installed, prereleases=True
        ):
            missing.append(f"{spec} (installed: {installed})")
    return missing
