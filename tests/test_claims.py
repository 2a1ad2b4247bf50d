"""``lpdm claims``: the page's claims table is the committed data's, and each verdict rule
judges tiny synthetic studies as its text says."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from lpdm.cli import main
from lpdm.report import claims_page
from lpdm.report.archive import write_archive
from lpdm.report.claims import (
    COST,
    MEMORY,
    NOT_LOWER,
    BenchCell,
    BenchRatios,
    Claim,
    Compare,
    Side,
    StuckLess,
)
from lpdm.report.claims_page import BEGIN, END, claims_table
from lpdm.report.generated_page import block_is_current, write_block
from lpdm.report.judge import (
    IMPLEMENTATION,
    NOT_JUDGED,
    NOT_REFUTED,
    REFUTED,
    judge,
    verdict_text,
)
from lpdm.report.records import RunRecord

ROOT = Path(__file__).parents[1]
PAGE = ROOT / "docs/reproduction.md"
ARCHIVE = "docs/results/toy/archive.npz"


def test_the_page_holds_the_table_of_the_committed_data():
    assert block_is_current(PAGE, claims_table(ROOT), BEGIN, END), \
        "docs/reproduction.md is stale: run `lpdm claims --write docs/reproduction.md`"


def _run(learner: str, seed: int, final: float) -> RunRecord:
    return RunRecord(path=Path(f"/toy/{learner}/s{seed}"), env="CartPole-v1", algo="ppo",
                     learner=learner, variant="", seed=seed, status="finished",
                     final_score=final, max_score=final + 10, eval_score=math.nan,
                     total_steps=1000, seconds_per_iteration=0.1,
                     update_seconds_per_iteration=math.nan, seconds_per_1k_steps=math.nan,
                     stored_options={}, stored_metrics={
                         "global_step": np.array([500.0, 1000.0]),
                         "episodic_return": np.array([final, final])})


def _toy_study(root: Path, path: str, lpdm_finals: list[float], frozen_at: float = 10.0
               ) -> None:
    """CartPole PPO, 5 seeds: bp at 400-404, frozen at ``frozen_at`` + 0-4, lpdm at
    ``lpdm_finals``."""
    runs = [_run("bp", s, 400.0 + s) for s in range(5)]
    runs += [_run("frozen", s, frozen_at + s) for s in range(5)]
    runs += [_run("lpdm", s, final) for s, final in enumerate(lpdm_finals)]
    (root / path).parent.mkdir(parents=True)
    write_archive(root / path, runs, Path("/toy"))


COMPETITIVE = Claim("LPDM competitive with BP", (ARCHIVE,),
                    Compare(Side("lpdm"), Side("bp"), NOT_LOWER), "toy")
STUCK_LESS = Claim("LPDM stuck less", (ARCHIVE,), StuckLess(Side("lpdm"), Side("bp")), "toy")


def test_a_learner_far_below_bp_is_refuted_and_one_level_with_it_not_refuted(tmp_path):
    _toy_study(tmp_path / "low", ARCHIVE, [20.0, 21.0, 22.0, 23.0, 24.0])
    _toy_study(tmp_path / "level", ARCHIVE, [399.5, 400.5, 401.5, 402.5, 403.5])
    [low] = judge(COMPETITIVE, tmp_path / "low")
    [level] = judge(COMPETITIVE, tmp_path / "level")
    assert low.verdict == REFUTED and low.versus_bp.startswith("0.00")
    assert low.per_env == "higher in 0, lower in 1 of 1"  # one test: p = 0.0079
    assert low.versus_frozen.startswith("1.00")
    assert level.verdict == NOT_REFUTED
    # every lpdm run under the threshold (half bp's median), no bp run: more stuck, p < 0.05
    [stuck] = judge(STUCK_LESS, tmp_path / "low")
    assert stuck.verdict == REFUTED and "5/5" in stuck.statistic and "0/5" in stuck.statistic


def test_an_algorithm_whose_bp_does_not_beat_frozen_judges_nothing(tmp_path):
    # frozen level with bp: the algorithm cannot tell a trained trunk from a random one
    _toy_study(tmp_path, ARCHIVE, [20.0, 21.0, 22.0, 23.0, 24.0], frozen_at=399.5)
    [found] = judge(COMPETITIVE, tmp_path)
    assert found.verdict == NOT_JUDGED
    assert found.why_not_judged.startswith("P(`bp` > `frozen`) 0.60 [")
    assert found.why_not_judged.endswith("; at face value refuted")
    assert verdict_text(found) == f"**not judged** ({found.why_not_judged})"
    [stuck] = judge(STUCK_LESS, tmp_path)
    assert stuck.verdict == NOT_JUDGED and "at face value refuted" in stuck.why_not_judged


def test_a_claim_outside_the_tuned_study_says_so(tmp_path):
    _toy_study(tmp_path, ARCHIVE, [20.0, 21.0, 22.0, 23.0, 24.0])
    outside = dataclasses.replace(COMPETITIVE, tuned=False)
    _toy_study(tmp_path, ARCHIVE.replace("results/", "results/tuned/"), [20.0] * 5)
    row = claims_table(tmp_path, (outside,)).splitlines()[2]
    assert row.endswith("| **refuted** | outside the tuned study (`docs/results/tuned/`) |")


def test_the_tuned_column_judges_the_tuned_archives_once_committed(tmp_path):
    _toy_study(tmp_path, ARCHIVE, [20.0, 21.0, 22.0, 23.0, 24.0])
    table = claims_table(tmp_path, (COMPETITIVE,))
    assert "the tuned study has not yet committed `docs/results/tuned/toy/archive.npz`" in table
    assert "CartPole-v1 × PPO; seeds 0–4 (15 runs); 1k steps; toy" in table
    _toy_study(tmp_path, ARCHIVE.replace("results/", "results/tuned/"),
               [399.5, 400.5, 401.5, 402.5, 403.5])
    row = claims_table(tmp_path, (COMPETITIVE,)).splitlines()[2]
    assert row.endswith("| **refuted** | **not refuted**: mean P(`lpdm` > `bp`) "
                        "0.40 [0.08, 0.80]<br>(CartPole-v1 × PPO; seeds 0–4 (15 runs); "
                        "1k steps) |")


def test_a_claim_can_name_where_the_tuned_study_holds_its_runs(tmp_path):
    # the Hopper-v4 study's claims: judged after tuning on the tuned study's Hopper part
    _toy_study(tmp_path, ARCHIVE, [20.0, 21.0, 22.0, 23.0, 24.0])
    elsewhere = "docs/results/tuned/suite/parts/toy/archive.npz"
    named = dataclasses.replace(COMPETITIVE, tuned_sources=(elsewhere,))
    assert "not yet committed" in claims_table(tmp_path, (named,))
    _toy_study(tmp_path, elsewhere, [399.5, 400.5, 401.5, 402.5, 403.5])
    row = claims_table(tmp_path, (named,)).splitlines()[2]
    assert "| **refuted** | **not refuted**: mean P(`lpdm` > `bp`) 0.40" in row


def test_a_claim_with_a_longer_budget_gets_that_verdict_after_the_tuned_one(tmp_path):
    # objection O4: the tuned options again at 1M steps, judged in the same cell
    _toy_study(tmp_path, ARCHIVE, [20.0, 21.0, 22.0, 23.0, 24.0])
    tuned, longer = "docs/results/tuned/toy/archive.npz", "docs/results/tuned/long/toy.npz"
    _toy_study(tmp_path, tuned, [20.0, 21.0, 22.0, 23.0, 24.0])
    both = dataclasses.replace(COMPETITIVE, longer_sources=(longer,))
    cell = claims_table(tmp_path, (both,)).splitlines()[2].split(" | ")[-1]
    assert cell.startswith("**refuted**: mean P(`lpdm` > `bp`) 0.00")
    assert cell.endswith(f"<br>longer: the tuned study has not yet committed `{longer}` |")
    _toy_study(tmp_path, longer, [399.5, 400.5, 401.5, 402.5, 403.5])
    cell = claims_table(tmp_path, (both,)).splitlines()[2].split(" | ")[-1]
    assert cell.startswith("**refuted**: mean P(`lpdm` > `bp`) 0.00")
    assert "1k steps)<br>longer: **not refuted**: mean P(`lpdm` > `bp`) 0.40" in cell


def test_bench_claims_read_the_bench_tables(tmp_path):
    page = tmp_path / "docs/performance.md"
    page.parent.mkdir()
    page.write_text("<!-- lpdm bench: begin -->\n### (d) peak memory\n\n"
                    "| depth | bp | lpdm / bp |\n|---:|---:|---:|\n| 2 | 16.5 | 0.38 |\n"
                    "| 16 | 69.1 | 1.20 |\n\n- note\n<!-- lpdm bench: end -->\n")
    cells = tuple(BenchCell(f"depth {d}", "(d)", "lpdm / bp", (("depth", d),))
                  for d in ("2", "16"))
    memory = Claim("less memory", ("docs/performance.md",), BenchRatios(cells, 1.0, MEMORY), "")
    cost = Claim("costs 1.5×", ("docs/performance.md",), BenchRatios(cells, 1.5, COST), "")
    [found] = judge(memory, tmp_path)
    assert found.verdict == "inconclusive"  # below 1 at depth 2, above at 16
    assert found.statistic == "depth 2: 0.38×, depth 16: 1.20× (claimed below 1×)"
    [found] = judge(cost, tmp_path)
    assert found.verdict == f"{IMPLEMENTATION}: here below the claimed 1.5× in 2 of 2"


def test_write_and_check_rewrite_and_compare_only_the_marked_block(tmp_path, monkeypatch,
                                                                   capsys):
    _toy_study(tmp_path, ARCHIVE, [20.0, 21.0, 22.0, 23.0, 24.0])
    monkeypatch.setattr(claims_page, "CLAIMS", (COMPETITIVE,))
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\n{BEGIN}\nold table\n{END}\n\nprose\n")
    argv = ["claims", "--root", str(tmp_path)]
    assert main([*argv, "--check", str(page)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main([*argv, "--write", str(page)]) == 0
    text = page.read_text()
    assert text.startswith(f"# Title\n\n{BEGIN}\n| claim |") and text.endswith(f"{END}\n\nprose\n")
    assert main([*argv, "--check", str(page)]) == 0
    assert not write_block(page, claims_table(tmp_path), BEGIN, END)  # unchanged
    page.write_text("no markers\n")
    assert main([*argv, "--check", str(page)]) == 2
    assert "needs one '<!-- claims:begin -->' line" in capsys.readouterr().err


@pytest.mark.parametrize("claim", claims_page.CLAIMS, ids=lambda c: c.statement[:40])
def test_every_claim_names_committed_data(claim):
    assert all((ROOT / source).exists() for source in claim.sources)
