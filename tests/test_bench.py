"""``lpdm bench``: every table runs and prints; no timing is asserted."""

import importlib.util
import sys

import pytest

from lpdm import bench
from lpdm.cli import main

TITLES = ("(a) pairwise l1", "(a2) l1 kernel", "(a3) whole layer loss", "(b) update phase",
          "(c) end-to-end PPO", "(d) peak memory", "(e) populations", "(e2) populations: shares")


def test_quick_bench_prints_every_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if not installed
    markdown = tmp_path / "performance.md"
    assert main(["bench", "--quick", "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: CPU ")
    for title in TITLES:
        assert title in out
    for row in ("lpdm kernel", "lpdm-guided", "lpdm sparse", "REINFORCE", "PPO",
                "lpdm PPO, lpdm", "environment alone", "Hopper-v4 ppo lpdm",
                "CartPole-v1 reinforce lpdm", "uneven: whole runs of 2000 steps"):
        assert row in out
    assert "hot loops at -march=" in out and "NOT vectorised" not in out
    assert "resident memory of a population of 32" in out
    assert "Stable-Baselines3 PPO skipped: stable-baselines3 is not installed" in out
    text = markdown.read_text()
    assert text.count("\n### ") + text.startswith("### ") == len(TITLES)
    assert "| depth | bp | lpdm (streaming) | lpdm / bp |" in text


@pytest.mark.skipif(importlib.util.find_spec("stable_baselines3") is None,
                    reason="stable-baselines3 is not installed")
def test_throughput_table_has_a_stable_baselines3_row():
    table = bench.throughput_table(quick=True)
    names = [row[0] for row in table.rows]
    assert "Stable-Baselines3 PPO" in names
    sb3 = names.index("Stable-Baselines3 PPO")
    assert table.rows[sb3][2] == "1.00×"  # the reference of its column


def test_unknown_table_is_a_user_error(capsys):
    assert main(["bench", "--only", "kernel,speed"]) == 2
    assert "unknown table speed" in capsys.readouterr().err


def test_table_renders_as_text_and_markdown():
    table = bench.Table("T", ["a", "bb"], [["1", "22"], ["333", "4"]], ["a note"])
    assert table.text().splitlines() == ["T", "=", "  a  bb", "---  --", "  1  22",
                                         "333   4", "note: a note"]
    assert table.markdown().splitlines() == ["### T", "", "| a | bb |", "|---:|---:|",
                                             "| 1 | 22 |", "| 333 | 4 |", "", "- a note"]


def test_candidates_are_timed_in_turns():
    order = []
    medians = bench.time_in_turns({"x": lambda: order.append("x"),
                                   "y": lambda: order.append("y")}, repeats=3, block_s=0.0)
    assert set(medians) == {"x", "y"}
    # two warm-up calls each, then rounds alternating between the candidates
    assert order == ["x", "x", "y", "y", "x", "y", "x", "y", "x", "y"]


def test_markdown_replaces_only_the_marked_section_of_a_page(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text(f"# Prose\n\n{bench.MARKDOWN_BEGIN}\nold tables\n{bench.MARKDOWN_END}\nmore\n")
    bench.write_markdown(page, "new tables\n")
    assert page.read_text() == (f"# Prose\n\n{bench.MARKDOWN_BEGIN}\nnew tables\n"
                                f"{bench.MARKDOWN_END}\nmore\n")
    other = tmp_path / "other.md"
    bench.write_markdown(other, "tables\n")
    assert other.read_text() == "tables\n"
