"""``vendhub simulate`` and ``vendhub machine mosquitto-files`` refuse arguments that would
exhaust the host or end in a traceback, with one line that names the argument and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from vendhub.__main__ import build_parser, main
from vendhub.machine.mosquitto_files import write_mosquitto_files
from vendhub.machine.outbox import Outbox, OutboxFolderError


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    # Only parsed: an argument let through must not start a simulation of it.
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("count", ["10001", "100000000"])
def test_simulate_refuses_more_than_ten_thousand_machines(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(["simulate", "-n", count], capsys)
    assert f"argument --machines/-n: expected a number from 1 to 10,000, got {count}" in err
    assert "own broker connection and outbox file" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--speed", "--tick", "--resend-after", "--keepalive"])
@pytest.mark.parametrize("text", ["nan", "inf", "NaN", "infinity"])
def test_simulate_refuses_numbers_that_are_not_finite(
    option: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(["simulate", f"{option}={text}"], capsys)
    assert f"argument {option}: expected " in err
    assert text in err


@pytest.mark.parametrize("option", ["--speed", "--tick"])
def test_simulate_still_names_nan_and_inf_as_not_finite(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "expected a finite number above 0, got nan" in refused(
        ["simulate", f"{option}=nan"], capsys
    )
    assert "expected a finite number above 0, got -inf" in refused(
        ["simulate", f"{option}=-inf"], capsys
    )


def test_an_outbox_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for path in (blocker / "m.db", blocker / "sub" / "m.db"):
        with pytest.raises(OutboxFolderError, match=f"{blocker} exists and is not a folder"):
            Outbox(path)
    with Outbox(tmp_path / "new" / "m.db") as outbox:  # a missing folder is still made
        assert outbox.pending() == []


def test_simulate_with_an_outbox_dir_that_is_a_file_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(
        ["simulate", "-n", "1", "--hub", "mqtt://127.0.0.1:1", "--outbox-dir", str(blocker)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"Cannot simulate: cannot keep the outbox sim_001.db in {blocker}: {blocker} " in err
    assert "exists and is not a folder" in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_mosquitto_files_into_a_file_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(ValueError, match=f"{blocker} exists and is not a folder"):
            write_mosquitto_files(tmp_path / "config", out)
        code = main(
            ["machine", "mosquitto-files", "-c", str(tmp_path / "config"), "--out", str(out)]
        )
        assert code == 1
        err = capsys.readouterr().err
        assert err.startswith(
            f"vendhub machine mosquitto-files: cannot write the Mosquitto files into {out}: "
            f"{blocker} exists and is not a folder; give --out a folder"
        )
        assert err.count("\n") == 1
    assert blocker.read_text() == ""
