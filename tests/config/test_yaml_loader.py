"""yaml_loader: located values, tags, and errors that point at file and line."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import yaml

from tests.config.conftest import WriteFile
from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.yaml_loader import (
    NodeDict,
    NodeList,
    NodeStr,
    SourceLocation,
    VendHubLoader,
    load_yaml,
)


def load_error(path: Path, **kwargs: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, **kwargs)
    return caught.value


def only_issue(error: ConfigError) -> ConfigIssue:
    assert len(error.issues) == 1, str(error)
    return error.issues[0]


def test_the_c_parser_is_used_when_available() -> None:
    if getattr(yaml, "CSafeLoader", None) is None:
        pytest.skip("PyYAML built without libyaml")
    assert issubclass(VendHubLoader, yaml.CSafeLoader)


# -- located values -------------------------------------------------------------------------


def test_values_keys_and_items_carry_their_lines(write: WriteFile, config_dir: Path) -> None:
    file = write(
        "configuration.yaml",
        """
        vendhub:
          name: Lobby
          port: 8123
          enabled: true
          nothing:
        machines:
          - id: lobby_1
          - 42
        """,
    )
    tree = load_yaml(file)

    assert isinstance(tree, NodeDict)
    assert tree.source == SourceLocation(file, 1)
    core = tree["vendhub"]
    assert isinstance(core, NodeDict)
    assert core.source == SourceLocation(file, 2)
    name = core["name"]
    assert isinstance(name, NodeStr)
    assert name == "Lobby"
    assert name.source == SourceLocation(file, 2)
    assert core.value_source("port") == SourceLocation(file, 3)
    assert core["port"] == 8123
    assert core.value_source("enabled") == SourceLocation(file, 4)
    assert core["enabled"] is True
    assert core["nothing"] is None
    assert core.value_source("nothing") == SourceLocation(file, 5)

    keys = list(tree)
    assert all(isinstance(key, NodeStr) for key in keys)
    assert [key.source.line for key in keys] == [1, 6]
    assert tree.key_source("machines") == SourceLocation(file, 6)

    machines = tree["machines"]
    assert isinstance(machines, NodeList)
    assert machines.source == SourceLocation(file, 7)
    assert machines.item_source(0) == SourceLocation(file, 7)
    assert machines.item_source(1) == SourceLocation(file, 8)
    assert machines.item_source(-1) == SourceLocation(file, 8)
    assert machines[1] == 42
    assert machines[0]["id"].source == SourceLocation(file, 7)


def test_other_scalar_types_are_plain_python_values(write: WriteFile) -> None:
    file = write("values.yaml", "ratio: 0.5\nday: 2024-05-01\nquoted: '42'\n")
    tree = load_yaml(file)
    assert tree["ratio"] == 0.5
    assert tree["day"] == datetime.date(2024, 5, 1)
    assert tree["quoted"] == "42"
    assert isinstance(tree["quoted"], NodeStr)


def test_a_plain_dict_key_finds_a_located_key(write: WriteFile) -> None:
    tree = load_yaml(write("a.yaml", "price: 5\n"))
    assert tree["price"] == 5
    assert "price" in tree


def test_empty_file_is_an_empty_mapping(write: WriteFile) -> None:
    file = write("empty.yaml", "")
    tree = load_yaml(file)
    assert tree == {}
    assert isinstance(tree, NodeDict)
    assert tree.source == SourceLocation(file, 1)


def test_comment_only_file_is_an_empty_mapping(write: WriteFile) -> None:
    assert load_yaml(write("comments.yaml", "# nothing yet\n")) == {}


def test_yaml_merge_keys_keep_explicit_values(write: WriteFile) -> None:
    file = write(
        "merge.yaml",
        """
        defaults: &defaults
          capacity: 10
          price: 100
        slot:
          <<: *defaults
          price: 150
        """,
    )
    slot = load_yaml(file)["slot"]
    assert slot == {"capacity": 10, "price": 150}
    assert slot.value_source("price") == SourceLocation(file, 6)
    assert slot.value_source("capacity") == SourceLocation(file, 2)


def test_loader_works_through_plain_yaml_load(tmp_path: Path) -> None:
    data = yaml.load("a: [1, b]\n", Loader=VendHubLoader)
    assert data == {"a": [1, "b"]}
    assert data["a"].item_source(1).line == 1


# -- !include ---------------------------------------------------------------------------------


def test_include_is_relative_to_the_including_file_and_nests(
    write: WriteFile, config_dir: Path
) -> None:
    main = write("configuration.yaml", "simulator: !include packages/simulator.yaml\n")
    simulator = write(
        "packages/simulator.yaml",
        """
        machines: !include machines/lobby.yaml
        """,
    )
    lobby = write("packages/machines/lobby.yaml", "- id: lobby_1\n  slots: 6\n")

    tree = load_yaml(main)

    assert tree == {"simulator": {"machines": [{"id": "lobby_1", "slots": 6}]}}
    assert tree.value_source("simulator") == SourceLocation(main, 1)
    assert tree["simulator"].source == SourceLocation(simulator, 1)
    machine = tree["simulator"]["machines"][0]
    assert machine["id"].source == SourceLocation(lobby, 1)
    assert machine.value_source("slots") == SourceLocation(lobby, 2)


def test_include_of_an_empty_file_is_an_empty_mapping(write: WriteFile) -> None:
    main = write("configuration.yaml", "automation: !include automations.yaml\n")
    write("automations.yaml", "")
    assert load_yaml(main) == {"automation": {}}


def test_missing_include_names_file_line_and_path(write: WriteFile, config_dir: Path) -> None:
    main = write(
        "configuration.yaml",
        """
        vendhub:
          name: x
        simulator:
          machines: !include machnes.yaml
        """,
    )
    write("machines.yaml", "[]\n")

    issue = only_issue(load_error(main))

    assert issue.file == main
    assert issue.line == 4
    assert issue.path == ("simulator", "machines")
    assert "'machnes.yaml' not found" in issue.message
    assert "did you mean 'machines.yaml'?" in issue.message
    assert str(issue).startswith("configuration.yaml:4: [simulator > machines] !include")


def test_include_of_a_folder_points_at_the_dir_tags(write: WriteFile, config_dir: Path) -> None:
    main = write("configuration.yaml", "machines: !include machines\n")
    (config_dir / "machines").mkdir()
    issue = only_issue(load_error(main))
    assert issue.line == 1
    assert "is a folder" in issue.message
    assert "!include_dir_named" in issue.message


def test_include_cycle_is_reported_not_recursed(write: WriteFile) -> None:
    main = write("configuration.yaml", "a: !include a.yaml\n")
    a = write("a.yaml", "b: !include b.yaml\n")
    write("b.yaml", "# b\n# loops\nback: !include configuration.yaml\n")

    issue = only_issue(load_error(main))

    assert issue.file == a.parent / "b.yaml"
    assert issue.line == 3
    assert issue.path == ("a", "b", "back")
    assert issue.message.startswith(
        "include cycle: configuration.yaml -> a.yaml -> b.yaml -> configuration.yaml"
    )


def test_errors_inside_an_included_file_point_into_that_file(write: WriteFile) -> None:
    main = write("configuration.yaml", "simulator: !include sim.yaml\n")
    sim = write("sim.yaml", "machines:\n  - id: a\n    id: b\n")

    issue = only_issue(load_error(main))

    assert issue.file == sim
    assert issue.line == 3
    assert issue.path == ("simulator", "machines", 0)


# -- !include_dir_* ----------------------------------------------------------------------------


@pytest.fixture
def machines_folder(write: WriteFile) -> dict[str, Path]:
    return {
        "b": write("machines/b_lobby.yaml", "- id: b1\n- id: b2\n"),
        "a": write("machines/a_gym.yaml", "- id: a1\n"),
        "nested": write("machines/east/c_office.yaml", "- id: c1\n"),
        "empty": write("machines/d_empty.yaml", ""),
        "hidden": write("machines/.hidden.yaml", "- id: hidden\n"),
        "hidden_dir": write("machines/.git/x.yaml", "- id: in_hidden_folder\n"),
        "secrets": write("machines/secrets.yaml", "pw: x\n"),
        "other": write("machines/notes.txt", "not yaml"),
    }


def test_include_dir_merge_list_concatenates_sorted_and_recursive(
    write: WriteFile, machines_folder: dict[str, Path]
) -> None:
    main = write("configuration.yaml", "machines: !include_dir_merge_list machines\n")

    machines = load_yaml(main)["machines"]

    assert [machine["id"] for machine in machines] == ["a1", "b1", "b2", "c1"]
    assert machines.item_source(0) == SourceLocation(machines_folder["a"], 1)
    assert machines.item_source(2) == SourceLocation(machines_folder["b"], 2)
    assert machines.item_source(3) == SourceLocation(machines_folder["nested"], 1)


def test_include_dir_merge_list_reports_the_true_index(write: WriteFile) -> None:
    write("machines/a.yaml", "- id: a1\n- id: a2\n")
    b = write("machines/b.yaml", "- id: b1\n  token: !secret nope\n")
    main = write("configuration.yaml", "machines: !include_dir_merge_list machines\n")

    issue = only_issue(load_error(main))

    assert issue.file == b
    assert issue.line == 2
    assert issue.path == ("machines", 2, "token")


def test_include_dir_merge_list_refuses_a_mapping_file(write: WriteFile) -> None:
    write("machines/a.yaml", "- id: a1\n")
    bad = write("machines/b.yaml", "id: b1\n")
    main = write("configuration.yaml", "machines: !include_dir_merge_list machines\n")

    issue = only_issue(load_error(main))

    assert issue.file == bad
    assert issue.line == 1
    assert "needs a list in every file" in issue.message
    assert "got a mapping" in issue.message


def test_include_dir_named_maps_file_stems(
    write: WriteFile, machines_folder: dict[str, Path]
) -> None:
    main = write("configuration.yaml", "machines: !include_dir_named machines\n")

    machines = load_yaml(main)["machines"]

    assert list(machines) == ["a_gym", "b_lobby", "d_empty", "c_office"]
    assert machines["b_lobby"] == [{"id": "b1"}, {"id": "b2"}]
    assert machines["d_empty"] == {}
    assert machines.key_source("c_office") == SourceLocation(machines_folder["nested"], 1)


def test_include_dir_named_refuses_two_files_with_one_stem(write: WriteFile) -> None:
    write("machines/lobby.yaml", "a: 1\n")
    write("machines/east/lobby.yaml", "a: 2\n")
    main = write("configuration.yaml", "a: 1\nmachines: !include_dir_named machines\n")

    issue = only_issue(load_error(main))

    assert issue.line == 2
    assert "two files are named 'lobby'" in issue.message
    assert "machines/lobby.yaml" in issue.message
    assert "machines/east/lobby.yaml" in issue.message


def test_include_dir_list_keeps_one_item_per_file(
    write: WriteFile, machines_folder: dict[str, Path]
) -> None:
    main = write("configuration.yaml", "machines: !include_dir_list machines\n")
    machines = load_yaml(main)["machines"]
    assert machines == [[{"id": "a1"}], [{"id": "b1"}, {"id": "b2"}], {}, [{"id": "c1"}]]


def test_include_dir_merge_named_merges_and_rejects_duplicates(write: WriteFile) -> None:
    write("slots/a.yaml", "A1: 100\nA2: 120\n")
    second = write("slots/b.yaml", "B1: 90\n")
    main = write("configuration.yaml", "prices: !include_dir_merge_named slots\n")
    prices = load_yaml(main)["prices"]
    assert prices == {"A1": 100, "A2": 120, "B1": 90}
    assert prices.value_source("B1") == SourceLocation(second, 1)

    write("slots/c.yaml", "# more prices\nA2: 130\n")
    issue = only_issue(load_error(main))
    assert issue.file == main.parent / "slots" / "c.yaml"
    assert issue.line == 2
    assert "duplicate key 'A2'" in issue.message
    assert "slots/a.yaml:2" in issue.message


def test_missing_include_dir_is_an_error(write: WriteFile) -> None:
    main = write("configuration.yaml", "a: 1\nmachines: !include_dir_named nowhere\n")
    issue = only_issue(load_error(main))
    assert issue.line == 2
    assert issue.path == ("machines",)
    assert "folder 'nowhere' not found" in issue.message


# -- !secret -----------------------------------------------------------------------------------


def test_secret_from_the_same_folder(write: WriteFile) -> None:
    write("secrets.yaml", "mqtt_password: hunter2\nmqtt_port: 1884\n")
    main = write(
        "configuration.yaml",
        "mqtt:\n  password: !secret mqtt_password\n  port: !secret mqtt_port\n",
    )

    mqtt = load_yaml(main)["mqtt"]

    assert mqtt == {"password": "hunter2", "port": 1884}
    assert mqtt["password"].source == SourceLocation(main, 2)
    assert mqtt.secret_name("password") == "mqtt_password"
    assert mqtt.value_source("port") == SourceLocation(main, 3)


def test_secret_found_in_a_parent_folder_nearest_first(write: WriteFile) -> None:
    write("secrets.yaml", "token: from_root\nonly_root: root_value\n")
    write("packages/secrets.yaml", "token: from_packages\n")
    main = write("configuration.yaml", "machine: !include packages/east/machine.yaml\n")
    write("packages/east/machine.yaml", "token: !secret token\nother: !secret only_root\n")

    assert load_yaml(main)["machine"] == {"token": "from_packages", "other": "root_value"}


def test_secret_search_stops_at_the_config_root(write: WriteFile, config_dir: Path) -> None:
    (config_dir.parent / "secrets.yaml").write_text("outside: nope\n", encoding="utf-8")
    main = write("configuration.yaml", "a: !secret outside\n")
    issue = only_issue(load_error(main))
    assert "secret 'outside' not found" in issue.message


def test_missing_secret_names_it_and_the_files_searched_never_a_value(
    write: WriteFile,
) -> None:
    write("secrets.yaml", "mqtt_password: hunter2-very-secret\n")
    write("packages/secrets.yaml", "db_password: correct-horse\n")
    main = write("configuration.yaml", "pkg: !include packages/pkg.yaml\n")
    pkg = write("packages/pkg.yaml", "broker:\n  host: x\n  password: !secret mqtt_pasword\n")

    error = load_error(main)
    issue = only_issue(error)

    assert issue.file == pkg
    assert issue.line == 3
    assert issue.path == ("pkg", "broker", "password")
    assert "secret 'mqtt_pasword' not found" in issue.message
    assert "searched packages/secrets.yaml, secrets.yaml" in issue.message
    assert "did you mean 'mqtt_password'?" in issue.message
    assert "hunter2-very-secret" not in str(error)
    assert "correct-horse" not in str(error)


def test_missing_secret_when_no_secrets_file_exists(write: WriteFile) -> None:
    main = write("configuration.yaml", "a: !secret api_key\n")
    issue = only_issue(load_error(main))
    assert "searched secrets.yaml (no such file)" in issue.message
    assert "add 'api_key: ...' to secrets.yaml" in issue.message


def test_secret_tag_inside_secrets_yaml_is_refused(write: WriteFile) -> None:
    secrets = write("secrets.yaml", "a: x\nb: !secret a\n")
    main = write("configuration.yaml", "value: !secret a\n")
    issue = only_issue(load_error(main))
    assert issue.file == secrets
    assert issue.line == 2
    assert "!secret cannot be used inside secrets.yaml" in issue.message


def test_secrets_yaml_syntax_error_does_not_show_values(write: WriteFile) -> None:
    secrets = write("secrets.yaml", "a: hunter2-very-secret\nb: [unclosed\n")
    main = write("configuration.yaml", "value: !secret a\n")
    error = load_error(main)
    issue = only_issue(error)
    assert issue.file == secrets
    assert "hunter2-very-secret" not in str(error)


# -- !env_var ----------------------------------------------------------------------------------


def test_env_var_value_and_default(write: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDHUB_TEST_HOST", "broker.local")
    monkeypatch.delenv("VENDHUB_TEST_PORT", raising=False)
    main = write(
        "configuration.yaml",
        "host: !env_var VENDHUB_TEST_HOST\nport: !env_var VENDHUB_TEST_PORT 1883\n"
        "greeting: !env_var VENDHUB_TEST_PORT hello there\n",
    )

    tree = load_yaml(main)

    assert tree == {"host": "broker.local", "port": "1883", "greeting": "hello there"}
    assert tree["port"].source == SourceLocation(main, 2)


def test_env_var_set_wins_over_default(write: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDHUB_TEST_PORT", "2000")
    main = write("configuration.yaml", "port: !env_var VENDHUB_TEST_PORT 1883\n")
    assert load_yaml(main) == {"port": "2000"}


def test_missing_env_var_without_default(write: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VENDHUB_TEST_MISSING", raising=False)
    main = write("configuration.yaml", "a: 1\nb: !env_var VENDHUB_TEST_MISSING\n")
    issue = only_issue(load_error(main))
    assert issue.line == 2
    assert issue.path == ("b",)
    assert "environment variable 'VENDHUB_TEST_MISSING' is not set" in issue.message


# -- other errors ------------------------------------------------------------------------------


def test_syntax_error_names_line_column_and_problem(write: WriteFile) -> None:
    main = write("configuration.yaml", "vendhub:\n  name: a\n  bad: x: y\n")
    issue = only_issue(load_error(main))
    assert issue.file == main
    assert issue.line == 3
    assert "column 9" in issue.message
    assert "mapping values are not allowed" in issue.message


def test_tab_indentation_gets_a_hint(write: WriteFile) -> None:
    main = write("configuration.yaml", "vendhub:\n\tname: a\n")
    issue = only_issue(load_error(main))
    assert issue.line == 2
    assert "use spaces" in issue.message


def test_unclosed_flow_list_names_where_it_started(write: WriteFile) -> None:
    main = write("configuration.yaml", "a: 1\nlanguages: [en, ru\nb: 2\n")
    issue = only_issue(load_error(main))
    assert issue.line == 3
    assert "started at line 2" in issue.message


def test_duplicate_key_reports_both_lines(write: WriteFile) -> None:
    main = write(
        "configuration.yaml",
        """
        simulator:
          machines:
            - id: lobby_1
              price: 100
              capacity: 5
              price: 120
        """,
    )
    issue = only_issue(load_error(main))
    assert issue.line == 6
    assert issue.path == ("simulator", "machines", 0)
    assert "duplicate key 'price'" in issue.message
    assert "line 4 and again at line 6" in issue.message


def test_all_problems_of_one_load_are_reported_together(write: WriteFile) -> None:
    main = write("configuration.yaml", "a: !secret one\nb: !include two.yaml\nc: !bogus x\n")
    issues = load_error(main).issues
    assert [issue.line for issue in issues] == [1, 2, 3]
    assert "unknown tag '!bogus'" in issues[2].message


def test_misspelt_tag_gets_a_suggestion(write: WriteFile) -> None:
    main = write("configuration.yaml", "a: !includ x.yaml\n")
    assert "did you mean '!include'?" in only_issue(load_error(main)).message


def test_missing_file_and_folder_given_to_load_yaml(tmp_path: Path) -> None:
    issue = only_issue(load_error(tmp_path / "nope.yaml"))
    assert issue.file == tmp_path / "nope.yaml"
    assert "does not exist" in issue.message
    assert "is a folder" in only_issue(load_error(tmp_path)).message


def test_non_utf8_file_names_its_line(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes(b"a: 1\nname: caf\xe9\n")
    issue = only_issue(load_error(file))
    assert issue.line == 2
    assert "not UTF-8" in issue.message


def test_times_of_day_stay_text_not_base_60_numbers(tmp_path: Path) -> None:
    path = tmp_path / "times.yaml"
    path.write_text("opens: 07:30\ncloses: 22:00:00\nprice: 150\nratio: 0.5\nhex: 0x1F\n")
    assert load_yaml(path) == {
        "opens": "07:30",
        "closes": "22:00:00",
        "price": 150,
        "ratio": 0.5,
        "hex": 31,
    }
