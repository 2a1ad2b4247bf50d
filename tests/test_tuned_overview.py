"""``lpdm tuned``: one row per tuning study from its files, the budgets compared, and the
tuned study's committed page kept current."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lpdm.cli import main
from lpdm.errors import RunError
from lpdm.report.archive import write_archive
from lpdm.report.records import RunRecord
from lpdm.tuning.overview import BEGIN, END, overview_table

ROOT = Path(__file__).parents[1]
TRIALS_HEADER = "trial,state,score,param_lr,seconds,retry_of,worker,error\n"


def _study(folder: Path, learner: str, trials: list[str], best: dict | None,
           total_steps: int = 1000) -> None:
    """A study folder as ``lpdm tune`` leaves it: ``trials`` are trials.csv rows."""
    folder.mkdir(parents=True)
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    if learner == "lpdm":
        space["scale"] = {"type": "categorical", "choices": ["dim", "none"]}
    (folder / "tune.json").write_text(json.dumps({
        "env": "CartPole-v1", "algo": "ppo", "learner": learner, "seeds": [10, 11],
        "total_steps": total_steps, "trials": 3, "space": space, "fixed": {},
        "pruner": "median", "sampler_seed": 0}))
    (folder / "trials.csv").write_text(TRIALS_HEADER + "".join(f"{t}\n" for t in trials))
    if best is not None:
        (folder / "best.json").write_text(json.dumps(best))


def _best(learner: str, trial: int, score: float, **values) -> dict:
    return {"trial": trial, "score": score, "values": {
        "env": "CartPole-v1", "algo": "ppo", "learner": learner, **values}}


def test_a_row_per_study_with_its_spent_budget_and_chosen_options(tmp_path):
    studies = tmp_path / "studies"
    _study(studies / "CartPole-v1/bp", "bp",
           ["0,complete,120.5,0.001,9,,w,", "1,pruned,30.0,0.0002,4,,w,",
            "2,fail,,0.01,1,,w,", "3,complete,200.25,0.003,9,2,w,"],  # 2 died, 3 its retry
           _best("bp", 3, 200.25, lr=0.003, update_epochs=4))
    _study(studies / "CartPole-v1/lpdm", "lpdm",
           ["0,complete,80.0,0.001,9,,w,", "1,fail,,0.002,1,,w,bad options",
            "2,complete,90.0,0.004,9,,w,"],
           _best("lpdm", 2, 90.0, lr=0.004, scale="none"))
    table = overview_table(studies, tmp_path)
    rows = table.splitlines()
    assert rows[0].startswith("| environment | learner | trials spent (complete, pruned, "
                              "failed) | best held-out score (trial) | `lr` | `scale` |")
    # the trial whose process died is not counted; its retry is
    assert rows[2] == ("| CartPole-v1 | `bp` | 3 of 3 (2, 1, 0) | [200.2](studies/CartPole-v1"
                       "/bp/report.md) (trial 3) | 0.003 | — | `update_epochs` 4 |")
    # a trial lpdm failed counts against the budget
    assert rows[3] == ("| CartPole-v1 | `lpdm` | 3 of 3 (2, 0, 1) | [90.0](studies/CartPole-v1"
                       "/lpdm/report.md) (trial 2) | 0.004 | none | — |")
    assert "Every study's budget: 3 trials, each 2 held-out seeds × 1,000 steps. Every " \
           "study has spent it." in table


def test_unequal_and_unspent_budgets_are_said(tmp_path):
    studies = tmp_path / "studies"
    _study(studies / "CartPole-v1/bp", "bp", ["0,complete,120.5,0.001,9,,w,"],
           _best("bp", 0, 120.5, lr=0.001))
    _study(studies / "CartPole-v1/lpdm", "lpdm", ["0,running,,0.001,,,w,"], None,
           total_steps=2000)
    table = overview_table(studies, studies)
    assert "[none completed](CartPole-v1/lpdm/report.md)" in table
    assert "**The studies' budgets differ** (trials, seeds, steps): 3 × 2 × 1,000; " \
           "3 × 2 × 2,000." in table
    assert "Not yet spent in full: CartPole-v1 `bp`, CartPole-v1 `lpdm`." in table
    assert "Tuned, not yet confirmed: none. Still tuning: CartPole-v1." in table


def _confirmation_run(learner: str, seed: int) -> RunRecord:
    return RunRecord(path=Path(f"/c/{learner}/s{seed}"), env="CartPole-v1", algo="ppo",
                     learner=learner, variant="", seed=seed, status="finished",
                     final_score=100.0, max_score=100.0, eval_score=math.nan,
                     total_steps=150_000, seconds_per_iteration=0.1,
                     update_seconds_per_iteration=math.nan, seconds_per_1k_steps=math.nan,
                     stored_options={}, stored_metrics={
                         "global_step": np.array([1000.0]), "episodic_return": np.array([1.0])})


def test_the_confirmation_status_is_read_from_the_committed_parts(tmp_path):
    """An environment whose every learner's study is spent waits for its confirmation until
    an archive under ``suite/parts/`` beside the studies holds it."""
    studies = tmp_path / "studies"
    for learner in ("bp", "lpdm"):
        _study(studies / f"CartPole-v1/{learner}", learner,
               [f"{t},complete,1.0,0.001,9,,w," for t in range(3)],
               _best(learner, 0, 1.0, lr=0.001))
    assert "Confirmed: none yet. Tuned, not yet confirmed: CartPole-v1. Still tuning: " \
           "none." in overview_table(studies, tmp_path)
    archive = tmp_path / "suite/parts/cartpole/archive.npz"
    archive.parent.mkdir(parents=True)
    write_archive(archive, [_confirmation_run(learner, seed) for learner in ("bp", "lpdm")
                            for seed in range(10)], Path("/c"))
    assert "Confirmed: CartPole-v1 (`suite/parts/cartpole`: `bp`, `lpdm`, seeds 0–9, 150,000 " \
           "steps, 20 finished runs). Tuned, not yet confirmed: none. Still tuning: none." \
           in overview_table(studies, tmp_path)
    longer = tmp_path / "long/parts/cartpole-1m/archive.npz"
    longer.parent.mkdir(parents=True)
    write_archive(longer, [dataclasses.replace(_confirmation_run("bp", seed),
                                               total_steps=1_000_000) for seed in range(5)],
                  Path("/c"))
    assert "At a longer budget: CartPole-v1 (`long/parts/cartpole-1m`: `bp`, seeds 0–4, " \
           "1,000,000 steps, 5 finished runs)." in overview_table(studies, tmp_path)


def test_write_and_check_the_pages_block(tmp_path, capsys):
    studies = tmp_path / "studies"
    _study(studies / "CartPole-v1/bp", "bp", ["0,complete,120.5,0.001,9,,w,"],
           _best("bp", 0, 120.5, lr=0.001))
    page = tmp_path / "README.md"
    page.write_text(f"# Tuned\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    assert main(["tuned", str(studies), "--check", str(page)]) == 1
    assert "the tuned block is stale" in capsys.readouterr().err
    assert main(["tuned", str(studies), "--write", str(page)]) == 0
    assert main(["tuned", str(studies), "--check", str(page)]) == 0
    text = page.read_text()
    assert text.startswith(f"# Tuned\n\n{BEGIN}\n| environment |") and text.endswith(
        f"{END}\n\nafter\n")
    assert "[120.5](studies/CartPole-v1/bp/report.md)" in text


def test_a_folder_without_studies_is_refused(tmp_path):
    with pytest.raises(RunError, match="no tuning study"):
        overview_table(tmp_path, tmp_path)


@pytest.mark.parametrize("study, learners", [
    ("docs/results/tuned", []),
    ("docs/results/leaderboard/tuned", [
        "--learners", "dfa,layerwise,lpdm-metric",
        "--envs", "CartPole-v1,Pendulum-v1,InvertedDoublePendulum-v4,Hopper-v4,HalfCheetah-v4"])])
def test_the_tuned_studies_pages_are_current(study, learners):
    args = [str(ROOT / study / "studies"), *learners]
    assert main(["tuned", *args, "--check", str(ROOT / study / "README.md")]) == 0, \
        f"run `lpdm tuned {study}/studies {' '.join(learners)} --write {study}/README.md`"


def test_an_environment_waits_for_every_named_learner(tmp_path, capsys):
    studies = tmp_path / "studies"
    _study(studies / "CartPole-v1/bp", "bp", [f"{t},complete,1.0,0.001,9,,w," for t in range(3)],
           _best("bp", 0, 1.0, lr=0.001))
    assert "Tuned, not yet confirmed: CartPole-v1." in overview_table(studies, tmp_path)
    text = overview_table(studies, tmp_path, ("bp", "dfa"))
    assert "Tuned, not yet confirmed: none. Still tuning: CartPole-v1." in text
    assert "`lpdm tuned STUDIES --learners bp,dfa --write PAGE`" in text
    assert main(["tuned", str(studies), "--learners", "bp,dfa"]) == 0
    assert "Still tuning: CartPole-v1." in capsys.readouterr().out
    with pytest.raises(RunError, match="unknown learner 'dfaa'"):
        overview_table(studies, tmp_path, ("bp", "dfaa"))
    planned = ("CartPole-v1", "Pendulum-v1")
    text = overview_table(studies, tmp_path, ("bp",), planned)
    assert "Tuned, not yet confirmed: CartPole-v1. Still tuning: none. No study here " \
        "yet: Pendulum-v1." in text
    assert "`lpdm tuned STUDIES --learners bp --envs CartPole-v1,Pendulum-v1 --write PAGE`" \
        in text
    assert main(["tuned", str(studies), "--envs", ",".join(planned)]) == 0
    assert "No study here yet: Pendulum-v1." in capsys.readouterr().out
