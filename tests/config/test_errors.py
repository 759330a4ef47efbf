"""ConfigIssue / ConfigError text."""

from __future__ import annotations

import pickle
from pathlib import Path

from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.nodes import NodeStr, SourceLocation


def test_issue_text_relative_to_the_config_dir(tmp_path: Path) -> None:
    issue = ConfigIssue(
        "expected int, got 'abc'",
        tmp_path / "packages" / "sim.yaml",
        12,
        ("simulator", "machines", 0, "slots", "A1", "price"),
        config_dir=tmp_path,
    )
    assert str(issue) == (
        "packages/sim.yaml:12: [simulator > machines > 0 > slots > A1 > price] "
        "expected int, got 'abc'"
    )


def test_issue_text_outside_the_config_dir_is_absolute(tmp_path: Path) -> None:
    file = tmp_path / "elsewhere.yaml"
    issue = ConfigIssue("bad", file, 3, config_dir=tmp_path / "config")
    assert str(issue) == f"{file}:3: bad"


def test_issue_without_line_or_file() -> None:
    assert str(ConfigIssue("no config", Path("/x/configuration.yaml"), None)) == (
        "/x/configuration.yaml: no config"
    )
    assert str(ConfigIssue("bad", None, None, ("a", 1))) == "[a > 1] bad"


def test_issue_at_a_source_location(tmp_path: Path) -> None:
    source = SourceLocation(tmp_path / "configuration.yaml", 5, tmp_path)
    issue = ConfigIssue.at("bad", source, (NodeStr("vendhub"), 0))
    assert (issue.file, issue.line, issue.config_dir) == (source.file, 5, tmp_path)
    assert type(issue.path[0]) is str
    assert issue.path == ("vendhub", 0)
    assert str(issue) == "configuration.yaml:5: [vendhub > 0] bad"
    assert ConfigIssue.at("bad", None) == ConfigIssue("bad", None, None)


def test_error_lists_every_issue_one_per_line() -> None:
    error = ConfigError(
        [ConfigIssue("first", Path("/c/a.yaml"), 1), ConfigIssue("second", None, None)]
    )
    assert str(error) == "/c/a.yaml:1: first\nsecond"
    assert len(error.issues) == 2
    assert ConfigError(ConfigIssue("one", None, None)).issues == [ConfigIssue("one", None, None)]


def test_error_survives_pickling_for_worker_processes(tmp_path: Path) -> None:
    error = ConfigError([ConfigIssue("bad", tmp_path / "a.yaml", 4, ("x",), config_dir=tmp_path)])
    copy = pickle.loads(pickle.dumps(error))
    assert copy.issues == error.issues
    assert str(copy) == "a.yaml:4: [x] bad"
