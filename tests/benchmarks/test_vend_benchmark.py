"""`scripts/bench vend` runs end to end on a small fleet and ends with its JSON figures."""

from __future__ import annotations

import json

import pytest

from scripts.benchmarks import vend


def test_the_vend_benchmark_prints_its_figures_as_its_last_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ["--machines", "3", "--rounds", "4", "--seconds", "0.3", "--vends", "3"]
    assert vend.main([*arguments, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["machines"] == 3
    assert figures["vends"] == 3 * 4
    assert figures["failed"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert 0 < figures["floor_p50_ms"] <= figures["floor_p99_ms"]
    assert figures["p99_over_floor"] == pytest.approx(
        figures["p99_ms"] / figures["floor_p99_ms"], rel=0.02
    )
    assert figures["saturated_vends"] == 3 * 3
    assert any(line.startswith("floor: two group commits, 3 at once") for line in lines)
