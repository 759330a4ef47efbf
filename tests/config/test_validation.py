"""validate(): every voluptuous error becomes a human message at the right file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from tests.config.conftest import WriteFile
from vendhub.config import validators as cv
from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.nodes import SourceLocation
from vendhub.config.validation import validate
from vendhub.config.yaml_loader import load_yaml

SLOT_SCHEMA = vol.Schema(
    {
        vol.Required("price"): cv.money_minor_units,
        vol.Optional("capacity", default=10): cv.positive_int,
        vol.Optional("product"): cv.slug,
    },
    extra=vol.PREVENT_EXTRA,
)

MACHINE_SCHEMA = vol.Schema(
    {
        vol.Required("id"): cv.slug,
        vol.Required("slots"): {str: SLOT_SCHEMA},
        vol.Optional("token"): cv.string,
        vol.Optional("port"): cv.port,
        vol.Optional("poll_interval"): cv.time_period,
        vol.Optional("languages"): vol.All(cv.ensure_list, [cv.language]),
    },
    extra=vol.PREVENT_EXTRA,
)

SIMULATOR_SCHEMA = vol.Schema({vol.Required("machines"): cv.list_of(MACHINE_SCHEMA)})


def validation_issues(schema: vol.Schema, data: Any, **kwargs: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        validate(schema, data, **kwargs)
    return caught.value.issues


def only_issue(issues: list[ConfigIssue]) -> ConfigIssue:
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


@pytest.fixture
def simulator_file(write: WriteFile) -> Path:
    return write(
        "configuration.yaml",
        """
        vendhub:
          name: Lobby
        simulator:
          machines:
            - id: gym_1
              slots:
                B1:
                  price: 100
            - id: lobby_1
              slots:
                A1:
                  price: abc
                  capacity: 5
                A2:
                  pirce: 120
        """,
    )


def test_valid_data_is_returned_with_defaults(write: WriteFile) -> None:
    file = write("sim.yaml", "machines:\n  - id: a\n    slots:\n      A1: {price: 150}\n")
    result = validate(SIMULATOR_SCHEMA, load_yaml(file))
    assert result == {"machines": [{"id": "a", "slots": {"A1": {"price": 150, "capacity": 10}}}]}


def test_every_error_is_reported_with_line_and_path_through_lists(
    simulator_file: Path,
) -> None:
    tree = load_yaml(simulator_file)

    issues = validation_issues(SIMULATOR_SCHEMA, tree["simulator"], root_path=("simulator",))

    by_line = {issue.line: issue for issue in issues}
    assert set(by_line) == {12, 14, 15}
    wrong_type = by_line[12]
    assert wrong_type.file == simulator_file
    assert wrong_type.path == ("simulator", "machines", 1, "slots", "A1", "price")
    assert wrong_type.message == (
        "expected an amount in minor units (cents) as a whole number, 0 to 1,000,000,000, "
        "got 'abc' (str)"
    )
    assert str(wrong_type) == (
        "configuration.yaml:12: [simulator > machines > 1 > slots > A1 > price] "
        "expected an amount in minor units (cents) as a whole number, 0 to 1,000,000,000, "
        "got 'abc' (str)"
    )
    misspelt = by_line[15]
    assert misspelt.path == ("simulator", "machines", 1, "slots", "A2")
    assert misspelt.message == "unknown key 'pirce', did you mean 'price'?"
    missing = by_line[14]
    assert missing.path == ("simulator", "machines", 1, "slots", "A2")
    assert missing.message == "required key 'price' is missing"


def test_required_key_missing_points_at_the_mapping_that_lacks_it(write: WriteFile) -> None:
    file = write("sim.yaml", "machines:\n  - id: a\n  - id: b\n    token: t\n")
    issues = validation_issues(SIMULATOR_SCHEMA, load_yaml(file))
    assert [(issue.line, issue.path, issue.message) for issue in issues] == [
        (2, ("machines", 0), "required key 'slots' is missing"),
        (3, ("machines", 1), "required key 'slots' is missing"),
    ]


def test_unknown_key_without_a_close_match_lists_the_valid_keys(write: WriteFile) -> None:
    file = write("slot.yaml", "price: 1\nzzz: 2\n")
    issue = only_issue(validation_issues(SLOT_SCHEMA, load_yaml(file)))
    assert issue.line == 2
    assert issue.message == "unknown key 'zzz'; valid keys: capacity, price, product"


def test_wrong_type_of_a_plain_voluptuous_type(write: WriteFile) -> None:
    file = write("a.yaml", "name: x\ncount: abc\n")
    issue = only_issue(validation_issues(vol.Schema({"name": str, "count": int}), load_yaml(file)))
    assert (issue.line, issue.path) == (2, ("count",))
    assert issue.message == "expected an integer, got 'abc' (str)"


def test_wrong_container_type(write: WriteFile) -> None:
    file = write("a.yaml", "machines:\n  id: a\n")
    issue = only_issue(validation_issues(SIMULATOR_SCHEMA, load_yaml(file)))
    assert issue.line == 2
    assert issue.path == ("machines",)
    assert issue.message == "expected a list ('- item' lines), got a mapping"


def test_plain_list_schema_reports_the_first_bad_item(write: WriteFile) -> None:
    file = write("sim.yaml", "machines:\n  - id: a\n  - id: b\n")
    schema = vol.Schema({"machines": [MACHINE_SCHEMA]})
    issue = only_issue(validation_issues(schema, load_yaml(file)))
    assert (issue.line, issue.path) == (2, ("machines", 0))


def test_invalid_mapping_key_points_at_the_key(write: WriteFile) -> None:
    file = write("a.yaml", "slots:\n  a1: 1\n  Bad Key: 2\n")
    schema = vol.Schema({"slots": {cv.slug: int}})
    issue = only_issue(validation_issues(schema, load_yaml(file)))
    assert (issue.line, issue.path) == (3, ("slots",))
    assert issue.message.startswith("invalid key 'Bad Key': expected a slug")
    assert "did you mean 'bad_key'?" in issue.message


def test_error_raised_for_an_entry_by_a_whole_mapping_validator(write: WriteFile) -> None:
    def capacity_holds_stock(slot: dict[str, int]) -> dict[str, int]:
        if slot["stock"] > slot["capacity"]:
            raise vol.Invalid("stock is larger than capacity", path=["stock"])
        return slot

    schema = vol.Schema(vol.All({"capacity": int, "stock": int}, capacity_holds_stock))
    file = write("slot.yaml", "capacity: 5\nstock: 9\n")
    issue = only_issue(validation_issues(schema, load_yaml(file)))
    assert (issue.line, issue.path) == (2, ("stock",))
    assert issue.message == "stock is larger than capacity, got 9 (int)"


def test_single_value_wrapped_by_ensure_list_keeps_its_line(write: WriteFile) -> None:
    file = write("m.yaml", "id: a\nslots: {}\nlanguages: English\n")
    issue = only_issue(validation_issues(MACHINE_SCHEMA, load_yaml(file)))
    assert issue.line == 3
    assert issue.path == ("languages", 0)
    assert "got 'English' (str)" in issue.message


def test_value_from_an_include_points_into_the_included_file(write: WriteFile) -> None:
    main = write("configuration.yaml", "simulator:\n  machines: !include machines.yaml\n")
    machines = write("machines.yaml", "- id: a\n  slots:\n    A1:\n      price: -3\n")
    tree = load_yaml(main)
    issue = only_issue(
        validation_issues(SIMULATOR_SCHEMA, tree["simulator"], root_path=("simulator",))
    )
    assert issue.file == machines
    assert issue.line == 4
    assert issue.path == ("simulator", "machines", 0, "slots", "A1", "price")


def test_a_secret_value_never_appears_in_a_validation_error(write: WriteFile) -> None:
    write("secrets.yaml", "broker_port: hunter2-very-secret\nbroker_token: [s3cr3t-item]\n")
    file = write(
        "machine.yaml",
        "id: a\nslots: {}\nport: !secret broker_port\ntoken: !secret broker_token\n",
    )

    with pytest.raises(ConfigError) as caught:
        validate(MACHINE_SCHEMA, load_yaml(file))

    text = str(caught.value)
    assert "hunter2-very-secret" not in text
    assert "s3cr3t-item" not in text
    by_line = {issue.line: issue for issue in caught.value.issues}
    assert set(by_line) == {3, 4}
    assert by_line[3].message == (
        "expected a port number from 1 to 65535, got <hidden> (the value of secret 'broker_port')"
    )
    assert by_line[4].message == "expected text, got a list"


def test_secret_that_is_valid_is_returned(write: WriteFile) -> None:
    write("secrets.yaml", "broker_port: 1884\n")
    file = write("machine.yaml", "id: a\nslots: {}\nport: !secret broker_port\n")
    assert validate(MACHINE_SCHEMA, load_yaml(file))["port"] == 1884


def test_root_path_and_default_source_for_data_without_location(tmp_path: Path) -> None:
    default = SourceLocation(tmp_path / "configuration.yaml", 7)
    issue = only_issue(
        validation_issues(SLOT_SCHEMA, 5, root_path=("simulator",), default_source=default)
    )
    assert issue.file == tmp_path / "configuration.yaml"
    assert issue.line == 7
    assert issue.path == ("simulator",)
    assert issue.message == "expected a mapping (key: value lines), got 5 (int)"


def test_plain_python_data_validates_without_locations() -> None:
    issue = only_issue(validation_issues(SLOT_SCHEMA, {"price": "x"}))
    assert issue.file is None
    assert issue.line is None
    assert issue.path == ("price",)
    assert str(issue) == (
        "[price] expected an amount in minor units (cents) as a whole number, 0 to 1,000,000,000, "
        "got 'x' (str)"
    )


def test_suggestions_look_through_all_and_any_wrappers(write: WriteFile) -> None:
    schema = vol.Schema(
        {"machine": vol.All(vol.Any(None, {"address": str, vol.Optional("timeout"): int}))}
    )
    file = write("a.yaml", "machine:\n  adress: x\n")
    issue = only_issue(validation_issues(schema, load_yaml(file)))
    assert issue.line == 2
    assert "did you mean 'address'?" in issue.message
