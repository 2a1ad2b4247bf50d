"""``lpdm report``: files, tables, verdicts, left-out runs, on synthetic and real sweeps."""

import ast
import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lpdm.cli import build_parser, main
from lpdm.report.build import build_report
from lpdm.sweeps.command import spec_from_args
from lpdm.sweeps.grid import expand, record_spec

FIGURES = ("overview.png", "learning_curves.png", "score_distributions.png",
           "performance_profiles.png", "wall_time.png")  # synthetic runs have no diagnostics


def fake_sweep(root: Path, argv: list[str], runs: dict) -> None:
    """A sweep directory whose runs are written by hand: ``runs[(env, learner, seed)]`` (or
    ``runs[(env, algo, learner, seed)]``) is ``(status, final_score, max_score)``; cells
    missing from ``runs`` are not started."""
    spec = spec_from_args(build_parser().parse_args(["sweep", "--out", str(root), *argv]))
    cells = expand(spec)
    record_spec(root, spec, len(cells))
    for cell in cells:
        found = runs.get((cell.env, cell.algo, cell.learner, cell.seed),
                         runs.get((cell.env, cell.learner, cell.seed)))
        if found is None:
            continue
        status, final, best = found
        path = root / cell.path
        path.mkdir(parents=True)
        summary = {"status": status, "env": cell.env, "algo": cell.algo,
                   "learner": cell.learner, "seed": cell.seed, "steps": 1000,
                   "total_steps": 1000, "final_score": final, "max_score": best,
                   "wall_seconds": 10.0, "iterations": 50, "seconds_per_iteration": 0.2,
                   "update_seconds_per_iteration": 0.05}
        if status == "failed":
            summary["error"] = "RuntimeError: boom"
        (path / "summary.json").write_text(json.dumps(summary))
        rows = [f"{step},{best * step / 1000:.1f},20" for step in range(100, 1001, 100)]
        (path / "metrics.csv").write_text("global_step,episodic_return,episodic_length\n"
                                          + "\n".join(rows) + "\n")


def read_scores(report_dir: Path) -> dict[str, dict[str, str]]:
    with (report_dir / "scores.csv").open() as f:
        return {row["learner"]: row for row in csv.DictReader(f)}


FINALS = {"bp": [500, 500, 490, 500, 480], "lpdm": [100, 120, 90, 150, 110],
          "lpdm-guided": [480, 500, 470, 500, 490], "frozen": [20, 25, 30, 22, 28]}


@pytest.fixture
def synthetic(tmp_path):
    runs = {("CartPole-v1", learner, seed): ("finished", float(final), float(final))
            for learner, finals in FINALS.items() for seed, final in enumerate(finals)}
    runs["CartPole-v1", "bp", 4] = ("finished", None, 480.0)  # no final score
    runs["CartPole-v1", "lpdm-guided", 2] = ("failed", None, 300.0)
    del runs["CartPole-v1", "frozen", 4]  # never started
    root = tmp_path / "study"
    fake_sweep(root, ["--learner", "bp,lpdm,lpdm-guided,frozen", "--seeds", "5"], runs)
    return root


def test_report_files_tables_and_verdicts(synthetic):
    report = build_report(synthetic)
    out = synthetic / "report"
    for name in ("index.html", "report.md", "scores.csv", "runs.csv", *FIGURES):
        assert (out / name).stat().st_size > 0, name
    for name in FIGURES:  # 256-colour PNGs: the page embeds them all
        with Image.open(out / name) as image:
            assert image.mode == "P", name

    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert len(re.findall(r'(?:src|href)="', page)) == len(FIGURES)  # nothing external

    scores = read_scores(out)
    assert scores["bp"]["runs"] == "5" and scores["bp"]["finished"] == "5"
    assert scores["bp"]["final_score_n"] == "4" and scores["bp"]["max_score_n"] == "5"
    assert float(scores["bp"]["final_score_median"]) == 500
    assert float(scores["lpdm"]["final_score_iqm"]) == pytest.approx((100 + 110 + 120) / 3)
    assert float(scores["lpdm"]["final_score_mean"]) == pytest.approx(114)
    assert float(scores["lpdm"]["stuck_threshold"]) == 250  # half of bp's median
    assert float(scores["lpdm"]["stuck_fraction"]) == 1.0
    assert float(scores["bp"]["stuck_fraction"]) == 0.0
    assert float(scores["lpdm"]["poi_vs_bp_final_score"]) == 0.0
    assert scores["lpdm-guided"]["finished"] == "4" and scores["frozen"]["runs"] == "5"

    text = (out / "report.md").read_text()
    assert "lpdm on CartPole-v1 with reinforce: **loses to bp in final score**" in text
    assert "frozen on CartPole-v1 with reinforce: **loses to bp in final score**" in text
    assert "**2 run(s) did not finish and are left out of every statistic** (1 failed, " \
           "1 not started)" in text
    assert "| CartPole-v1/reinforce/lpdm-guided/s2 | failed | RuntimeError: boom |" in text
    # one environment: Holm over 1 test leaves p as it is
    assert "| lpdm vs bp | reinforce | final score | 1 | 0 | 0 | 0 | 0 | 0 | 1 | 1 |" in text
    assert "p = 0.018, Holm-adjusted over 1 test 0.018" in text
    assert scores["lpdm"]["p_holm_vs_bp_final_score"] == scores["lpdm"]["p_vs_bp_final_score"]
    assert scores["lpdm"]["holm_tests_vs_bp_final_score"] == "1"
    assert "lpdm-guided on CartPole-v1 with reinforce: scores lower than bp in final score, " \
           "not significantly" in text
    assert report.headline().startswith("**Final score**")
    # the verdict matrix leads: a column per comparison and score, a coloured cell each
    assert "| setting | lpdm vs bp · final | lpdm vs bp · max |" in text
    assert "| CartPole-v1 · reinforce | ▼▼ 0.00 |" in text
    assert "lpdm-guided vs lpdm · final" in text and "lpdm vs frozen · final" in text
    page = (out / "index.html").read_text()
    assert '<td class="loses">▼▼ 0.00</td>' in page
    assert "<details><summary>Every verdict in words" in page
    assert page.index("Verdict</h2>") < page.index("<details>") < page.index("Table 2")
    # guided over unguided: IQMs 495 / 110 (lpdm-guided's failed run left out)
    assert "| CartPole-v1 · reinforce | final score | 4.50 [" in text
    assert float(scores["lpdm-guided"]["poi_vs_lpdm_final_score"]) == 1.0
    # stability: the runs' returns rise linearly to their max score over 10 episodes, so
    # bp's 10-episode mean first reaches the threshold 250 after its 9th episode (step 900)
    assert float(scores["bp"]["steps_to_threshold_median"]) == 900
    assert scores["bp"]["reached_threshold"] == "5"
    assert scores["lpdm"]["steps_to_threshold_median"] == "inf"
    assert scores["lpdm"]["reached_threshold"] == "0"
    assert float(scores["lpdm"]["stuck_fraction_low"]) == 1.0  # all 5 stuck: no spread
    assert "| CartPole-v1 · reinforce | lpdm | 100% [100%, 100%] | never [never, never] | 0/5 |" \
        in text

    with (out / "runs.csv").open() as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert statuses.count("finished") == 18 and statuses.count("not started") == 1


def test_stuck_threshold_can_be_given(synthetic):
    build_report(synthetic, stuck_thresholds={"CartPole-v1": 100.0})
    scores = read_scores(synthetic / "report")
    assert float(scores["lpdm"]["stuck_fraction"]) == pytest.approx(1 / 5)  # only 90 < 100
    assert "CartPole-v1:reinforce 100.0 (given)" in (synthetic / "report" / "report.md").read_text()


def test_negative_returns_get_a_meaningful_default_threshold(tmp_path):
    finals = {"bp": [-200, -180, -220], "lpdm": [-1200, -1300, -250]}
    runs = {("Pendulum-v1", learner, seed): ("finished", float(v), float(v))
            for learner, values in finals.items() for seed, v in enumerate(values)}
    fake_sweep(tmp_path, ["--env", "Pendulum-v1", "--learner", "bp,lpdm", "--seeds", "3"], runs)
    build_report(tmp_path)
    scores = read_scores(tmp_path / "report")
    # half-way from min(0, lowest score) = -1300 to the best median -200
    assert float(scores["lpdm"]["stuck_threshold"]) == -750
    assert float(scores["lpdm"]["stuck_fraction"]) == pytest.approx(2 / 3)


# Two environments under both algorithms. Under PPO every score sits at a fixed anchor of
# lpdm.suites (bp at CleanRL's PPO result: 1; frozen at the random policy's return: 0;
# lpdm half-way); REINFORCE has no reference scores, so it falls back to min-max.
TWO_ENVS = {("CartPole-v1", "ppo"): {"bp": 490.04, "lpdm": 257.5, "frozen": 24.96},
            ("Acrobot-v1", "ppo"): {"bp": -86.36, "lpdm": -293.18, "frozen": -500.0},
            ("CartPole-v1", "reinforce"): {"bp": 110.0, "lpdm": 60.0, "frozen": 25.0},
            ("Acrobot-v1", "reinforce"): {"bp": -110.0, "lpdm": -300.0, "frozen": -490.0}}


@pytest.fixture(scope="module")
def two_envs(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-envs")
    runs = {(env, algo, learner, seed): ("finished", value + seed - 1, value + seed - 1)
            for (env, algo), finals in TWO_ENVS.items() for learner, value in finals.items()
            for seed in range(3)}
    fake_sweep(root, ["--env", "CartPole-v1,Acrobot-v1", "--algo", "reinforce,ppo",
                      "--learner", "bp,lpdm,frozen", "--seeds", "3"], runs)
    return root, build_report(root)


def test_stuck_thresholds_are_per_environment_and_algorithm(two_envs, tmp_path):
    root, report = two_envs
    thresholds = report.analysis.thresholds
    # half-way from min(0, lowest final) = 0 to the best median, per algorithm
    assert thresholds["CartPole-v1", "ppo"] == pytest.approx(490.04 / 2)
    assert thresholds["CartPole-v1", "reinforce"] == pytest.approx(110 / 2)
    # Acrobot: from the lowest final score (-501 under PPO, -491 under REINFORCE)
    assert thresholds["Acrobot-v1", "ppo"] == pytest.approx(-501 + (-86.36 + 501) / 2)
    assert thresholds["Acrobot-v1", "reinforce"] == pytest.approx(-491 + (-110 + 491) / 2)
    text = (root / "report" / "report.md").read_text()
    assert "CartPole-v1:reinforce 55.0 (default)" in text
    assert "half-way from min(0, the lowest final score) to the best learner's median" in text

    given = build_report(root, tmp_path / "given", {"CartPole-v1": 100.0,
                                                      "CartPole-v1:ppo": 300.0})
    assert given.analysis.thresholds["CartPole-v1", "ppo"] == 300  # ENV:ALGO first
    assert given.analysis.thresholds["CartPole-v1", "reinforce"] == 100  # then ENV
    assert given.analysis.threshold_given == {
        ("CartPole-v1", "reinforce"): True, ("CartPole-v1", "ppo"): True,
        ("Acrobot-v1", "reinforce"): False, ("Acrobot-v1", "ppo"): False}


def test_stuck_threshold_flag_takes_an_algorithm(two_envs, tmp_path, capsys):
    root, _ = two_envs
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--stuck-threshold",
                 "CartPole-v1:ppo=300", "--stuck-threshold", "Acrobot-v1=-200"]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "CartPole-v1:ppo 300.0 (given)" in text
    assert "Acrobot-v1:ppo -200.0 (given)" in text and "Acrobot-v1:reinforce -200.0 (given)" \
        in text


def test_fixed_references_normalise_when_every_environment_has_them(two_envs):
    root, report = two_envs
    aggregates = {(a.algo, a.learner): a for a in report.analysis.aggregates}
    # PPO: lpdm.suites' random return is 0, CleanRL's PPO result 1 (seeds at -1, 0, +1)
    assert aggregates["ppo", "bp"].normalised_iqm.value == pytest.approx(1.0, abs=0.005)
    assert aggregates["ppo", "lpdm"].normalised_iqm.value == pytest.approx(0.5, abs=0.005)
    assert aggregates["ppo", "frozen"].normalised_iqm.value == pytest.approx(0.0, abs=0.005)
    assert report.analysis.normalisation["ppo"].kind == "fixed references"
    # REINFORCE has no published score of its own: the task's (PPO's) is its reference
    assert report.analysis.normalisation["reinforce"].kind == "fixed references"
    text = (root / "report" / "report.md").read_text()
    assert "reinforce, ppo: fixed references, (score − random) / (reference − random)" in text
    assert "CleanRL ppo.py, https://docs.cleanrl.dev/rl-algorithms/ppo/" in text
    # the performance profile's caption says it too
    assert any(line.startswith("*Performance profiles") and "Normalisation: reinforce, ppo: "
               "fixed references" in line for line in text.splitlines())


def test_min_max_normalisation_where_an_environment_has_no_reference(two_envs, monkeypatch,
                                                                     tmp_path):
    from lpdm import suites

    root, _ = two_envs
    monkeypatch.delitem(suites.REFERENCES, "Acrobot-v1")
    report = build_report(root, tmp_path / "report")
    scale = report.analysis.normalisation["reinforce"]
    assert scale.kind == "min-max" and scale.missing == ("Acrobot-v1",)
    assert scale.bounds["CartPole-v1"] == pytest.approx((24.96 - 1, 490.04 + 1))  # PPO too
    text = (tmp_path / "report" / "report.md").read_text()
    assert "min-max over this report's final scores per environment" in text
    assert "since Acrobot-v1 has no reference score for reinforce" in text


def test_aggregates_compare_with_bp_and_with_frozen_in_the_headline(two_envs):
    _, report = two_envs
    aggregates = {(a.algo, a.learner): a for a in report.analysis.aggregates}
    assert aggregates["ppo", "lpdm"].versus_bp.value == 0.0
    assert aggregates["ppo", "lpdm"].versus_frozen.value == 1.0
    assert aggregates["ppo", "bp"].versus_bp is None
    assert aggregates["ppo", "bp"].versus_frozen.value == 1.0
    assert aggregates["ppo", "frozen"].versus_frozen is None
    headline = report.headline()
    assert "| algorithm | learner | environments | IQM of normalised final score [CI] | " \
           "mean P(> bp) [CI] | mean P(> frozen) [CI] |" in headline
    assert "| ppo | lpdm | 2 | 0.50" in headline
    assert "Normalisation: " in headline


def test_a_single_seed_gives_estimates_without_intervals(tmp_path):
    runs = {("CartPole-v1", "bp", 0): ("finished", 500.0, 480.0),
            ("CartPole-v1", "lpdm", 0): ("finished", 200.0, 210.0)}
    fake_sweep(tmp_path, ["--learner", "bp,lpdm"], runs)
    build_report(tmp_path)
    scores = read_scores(tmp_path / "report")
    assert float(scores["lpdm"]["final_score_iqm"]) == 200
    assert scores["lpdm"]["final_score_iqm_low"] == "" and scores["lpdm"]["final_score_std"] == ""
    text = (tmp_path / "report" / "report.md").read_text()
    assert "lpdm on CartPole-v1 with reinforce: cannot be compared with bp in final score: " \
           "too few runs" in text


def test_report_of_a_real_sweep_and_of_a_folder_of_runs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert main(["sweep", "--learner", "bp,lpdm", "--seeds", "2", "--total-steps", "1500",
                 "--eval-every", "500", "--no-progress", "--out", str(sweep)]) == 0
    capsys.readouterr()
    assert main(["report", str(sweep)]) == 0
    stdout = capsys.readouterr().out
    assert f"report: {sweep / 'report' / 'index.html'}" in stdout
    assert "| CartPole-v1 · reinforce |" in stdout
    scores = read_scores(sweep / "report")
    assert {learner: row["finished"] for learner, row in scores.items()} == \
        {"bp": "2", "lpdm": "2"}
    for learner, row in scores.items():
        assert 8 <= float(row["max_score_iqm"]) <= 500, learner
        assert float(row["seconds_per_iteration"]) > 0
    for name in (*FIGURES, "diagnostics.png"):
        assert (sweep / "report" / name).exists(), name
    assert not (sweep / "report" / "layer_profiles.png").exists()  # two layers: nothing to add

    # without a sweep.json, every run directory below the folder is found
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "folder-report")]) == 0
    assert {k: v["finished"] for k, v in read_scores(tmp_path / "folder-report").items()} == \
        {"bp": "2", "lpdm": "2"}


@pytest.mark.parametrize(("argv", "message"), [
    (["report", "/no/such/dir"], "is neither a directory nor an archive"),
    (["report", "{tmp}/bad.npz"], "is not an lpdm archive"),
    (["report", "{tmp}"], "holds no runs"),
    (["report", "{tmp}", "--stuck-threshold", "CartPole-v1"], "expected ENV=NUMBER"),
])
def test_bad_report_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    (tmp_path / "bad.npz").write_text("not an archive")
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err


def test_settings_table_shows_the_options_that_differ(tmp_path):
    """Options that differ between learners, between seeds or from the defaults are listed,
    each under the learners it acts on; defaults every run shares, and local options under
    bp, are not."""
    from lpdm.config import Config, LocalConfig, to_dict

    root = tmp_path / "study"
    runs = {("CartPole-v1", learner, seed): ("finished", 100.0 + seed, 120.0 + seed)
            for learner in ("bp", "lpdm", "lpdm-guided") for seed in range(3)}
    fake_sweep(root, ["--learner", "bp,lpdm,lpdm-guided", "--seeds", "3"], runs)
    for (env, learner, seed) in runs:
        # each learner its own target scale (bp: unused); one lpdm seed another lr
        local = LocalConfig(target_scale={"bp": 1.0, "lpdm": 0.3, "lpdm-guided": 0.5}[learner])
        config = Config(env=env, learner=learner, seed=seed, local=local, gamma=0.95)
        if learner == "lpdm" and seed == 2:
            config.algorithm.lr = 0.01
        path = root / "CartPole-v1" / "reinforce" / learner / f"s{seed}"
        (path / "config.json").write_text(json.dumps(to_dict(config)))
    build_report(root)
    text = (root / "report" / "report.md").read_text()
    settings = text.split("## Settings")[1].split("## Scores")[0]
    assert "| CartPole-v1 · reinforce | `--target-scale` | – | 0.3 | 0.5 |" in settings
    assert "`--lr` | 0.001 | 0.001 \\| 0.01 | 0.001 |" in settings
    assert "`--guidance-strength`" not in settings  # acts on lpdm-guided alone
    assert "| `--gamma` | 0.95 | 0.95 | 0.95 |" in settings  # shared, but not the default
    assert "`--seed`" not in settings and "`--sparse`" not in settings


def test_time_ratios_only_between_runs_of_one_sweep(tmp_path):
    """bp and lpdm ran in one sweep, lpdm-guided in another (under another load): the
    report divides lpdm's time per iteration by bp's, and leaves lpdm-guided's blank."""
    from lpdm.config import Config, to_dict

    learners = {"first": ("bp", "lpdm"), "second": ("lpdm-guided",)}
    for sweep, names in learners.items():
        runs = {("CartPole-v1", learner, seed): ("finished", 100.0 + seed, 120.0 + seed)
                for learner in names for seed in range(3)}
        fake_sweep(tmp_path / sweep, ["--learner", ",".join(names), "--seeds", "3"], runs)
        for (env, learner, seed) in runs:
            path = tmp_path / sweep / env / "reinforce" / learner / f"s{seed}"
            config = Config(env=env, learner=learner, seed=seed)
            (path / "config.json").write_text(json.dumps(to_dict(config)))
    build_report(tmp_path, out=tmp_path / "report")
    scores = read_scores(tmp_path / "report")
    assert float(scores["lpdm"]["time_per_iteration_vs_bp"]) == pytest.approx(1.0)
    assert scores["lpdm-guided"]["time_per_iteration_vs_bp"] == ""


def test_guided_over_unguided_is_not_a_ratio_of_negative_returns(tmp_path):
    finals = {"lpdm": [-270.0, -260, -280], "lpdm-guided": [-300.0, -310, -290]}
    runs = {("Pendulum-v1", learner, seed): ("finished", v, v)
            for learner, values in finals.items() for seed, v in enumerate(values)}
    fake_sweep(tmp_path, ["--env", "Pendulum-v1", "--learner", "lpdm,lpdm-guided",
                          "--seeds", "3"], runs)
    build_report(tmp_path)
    text = (tmp_path / "report" / "report.md").read_text()
    ratios = text.split("## Guided over unguided")[1].split("## Settings")[0]
    assert "| Pendulum-v1 · reinforce | final score | not defined: not every score is " \
           "positive |" in ratios
    assert "1.11" not in ratios


def test_verdict_matrix_marks_a_comparison_without_scores(tmp_path):
    """A learner none of whose runs has a final score (no episode ended late enough) gets
    'n/a' cells, said in the legend, not blank ones."""
    runs = {("CartPole-v1", learner, seed): ("finished", None if learner == "lpdm" else 100.0
                                             + seed, 200.0 + seed)
            for learner in ("bp", "lpdm") for seed in range(3)}
    root = tmp_path / "study"
    fake_sweep(root, ["--learner", "bp,lpdm", "--seeds", "3"], runs)
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    row = next(line for line in text.splitlines()
               if line.startswith("| CartPole-v1 · reinforce | "))  # the matrix comes first
    assert [cell.strip() for cell in row.split("|")[2:4]] == ["n/a", "= 0.50"]
    assert "n/a: no run has this score" in text


def test_a_depth_sweep_gets_bars_per_depth_and_layer_profiles(tmp_path, capsys):
    """A sweep over --hidden-sizes: the overview puts a group of bars on each depth (ticks
    name the depth, the axis the option) and the layer profiles figure is drawn."""
    from lpdm.report.analysis import analyse
    from lpdm.report.collect import collect_runs
    from lpdm.report.figures import _columns
    from lpdm.sweeps.grid import short_variant

    assert short_variant("hidden-sizes=128-128-128-128") == "hidden-sizes=128×4"
    assert short_variant("hidden-sizes=64-32,sparse=true") == "hidden-sizes=64-32,sparse=true"
    assert short_variant("env-kwargs=forward_reward_weight=-1") == \
        "env-kwargs=forward_reward_weight=-1"
    assert short_variant("init-trunk=/runs/suite/Hopper-v4/ppo/bp") == "init-trunk=…/ppo/bp"
    assert short_variant("init-trunk=source/bp") == "init-trunk=source/bp"
    sweep = tmp_path / "depth"
    assert main(["sweep", "--learner", "bp,lpdm", "--hidden-sizes", "8,8/8,8,8",
                 "--total-steps", "600", "--no-progress", "--out", str(sweep)]) == 0
    assert main(["report", str(sweep)]) == 0
    capsys.readouterr()
    pairs, ticks, xlabel = _columns(analyse(collect_runs(sweep)), "CartPole-v1")
    assert ticks == ["reinforce\n8×2", "reinforce\n8×3"] and xlabel == "hidden-sizes"
    assert len(pairs) == 2
    assert (sweep / "report" / "layer_profiles.png").exists()
    with (sweep / "report" / "layer_profiles.csv").open() as f:
        layers = list(csv.DictReader(f))
    assert [(r["learner"], r["layers"], r["layer"]) for r in layers] == [
        (learner, depth, str(k)) for depth in ("2", "3") for learner in ("bp", "lpdm")
        for k in range(1, int(depth) + 1)]
    assert all(0 <= float(r["saturation"]) <= 1 and float(r["grad_norm"]) > 0 for r in layers)
    page = (sweep / "report" / "index.html").read_text()
    assert "against its depth" in page
    assert "| CartPole-v1 · reinforce · hidden-sizes=8×3 |" in \
        (sweep / "report" / "report.md").read_text()  # settings are named short in the text
    # the archive keeps the diagnostics (thinned): its report draws the layer profiles too
    build_report(sweep / "report" / "archive.npz", out=tmp_path / "from-archive")
    assert (tmp_path / "from-archive" / "layer_profiles.png").exists()
    assert (tmp_path / "from-archive" / "layer_profiles.csv").read_text().count("\n") == 11
    from lpdm.report.archive import read_archive
    columns = {n for run in read_archive(sweep / "report" / "archive.npz") for n in run.metrics()}
    assert any(n.endswith("_grad_norm") for n in columns)
    assert not any(n.endswith("_local_loss") for n in columns)  # kept: what the figures read


def test_overview_panels_widen_with_many_bar_groups(tmp_path):
    """Eight (algorithm, option) bar groups in one environment: the panel is wider than
    usual, so that the tick labels ('reinforce / 8', ...) do not run into each other."""
    from matplotlib.image import imread

    from lpdm.report.analysis import analyse
    from lpdm.report.collect import collect_runs
    from lpdm.report.figures import DPI, PANEL, overview

    runs = {("CartPole-v1", "lpdm", seed): ("finished", 100.0 + seed, 150.0 + seed)
            for seed in range(2)}
    fake_sweep(tmp_path / "sweep", ["--algo", "reinforce,ppo", "--learner", "lpdm",
                                    "--hidden-sizes", "8/16/32/64", "--seeds", "2"], runs)
    path = tmp_path / "overview.png"
    assert overview(analyse(collect_runs(tmp_path / "sweep")), path)
    assert imread(path).shape[1] > 1.3 * PANEL[0] * DPI


def test_a_folder_of_sweeps_keeps_their_options_and_judges_them_against_the_defaults(
        tmp_path):
    """A scratch sweep and a sweep over --sparse, reported together: each variant is its own
    setting (not pooled with the defaults), and each learner in it is judged against the
    same learner without the option."""
    scratch = {("CartPole-v1", learner, seed): ("finished", 100.0 + seed, 150.0 + seed)
               for learner in ("bp", "lpdm") for seed in range(4)}
    fake_sweep(tmp_path / "scratch", ["--learner", "bp,lpdm", "--seeds", "4"], scratch)
    sparse = {("CartPole-v1", "lpdm", seed): ("finished", 300.0 + seed, 350.0 + seed)
              for seed in range(4)}
    fake_sweep(tmp_path / "ablation", ["--learner", "lpdm", "--sparse", "true,false",
                                       "--seeds", "4"], sparse)
    build_report(tmp_path, out=tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| CartPole-v1 · reinforce · sparse=true |" in text
    assert "lpdm vs lpdm at defaults · final" in text
    # 4 runs against 4 (p = 2 / C(8, 4) = 0.029) in both variants: Holm over the 2 variants
    # of the family doubles it, so neither is significant after the correction
    assert "lpdm on CartPole-v1 with reinforce (sparse=true): scores higher than lpdm at " \
           "defaults in final score, not significantly" in text
    assert "p = 0.029, Holm-adjusted over 2 tests 0.057" in text
    assert "**No per-setting difference is significant after the correction**" in text
    assert "*X at defaults*: learner X" in text
    with (tmp_path / "report" / "scores.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row["learner"] == "lpdm"]
    rows.sort(key=lambda r: float(r["final_score_iqm"]))
    assert [float(r["final_score_iqm"]) for r in rows] == [101.5, 301.5, 301.5]
    assert [r["poi_vs_lpdm_at_defaults_final_score"] for r in rows] == ["", "1", "1"]


def defaults_and_sparse_sweeps(tmp_path: Path) -> None:
    """tmp_path/main: bp and lpdm at the defaults; tmp_path/sparse: lpdm with --sparse true,
    scoring higher; CartPole-v1, seeds 0-2, 5000 steps."""
    main_runs = {("CartPole-v1", learner, seed): ("finished", 100.0 + seed, 150.0 + seed)
                 for learner in ("bp", "lpdm") for seed in range(3)}
    fake_sweep(tmp_path / "main", ["--learner", "bp,lpdm", "--seeds", "3",
                                   "--total-steps", "5000"], main_runs)
    sparse = {("CartPole-v1", "lpdm", seed): ("finished", 300.0 + seed, 350.0 + seed)
              for seed in range(3)}
    fake_sweep(tmp_path / "sparse", ["--learner", "lpdm", "--seeds", "3", "--sparse", "true",
                                     "--total-steps", "5000"], sparse)


def test_sweeps_that_would_share_a_group_are_told_apart_by_what_they_set(tmp_path):
    """An ablation sweep (--sparse true) beside the sweep at the defaults: lpdm's runs of
    the two are separate settings; bp's (in one sweep only) stay in the defaults' setting;
    a third sweep that only adds seeds pools with the defaults."""
    defaults_and_sparse_sweeps(tmp_path)
    more = {("CartPole-v1", "lpdm", seed): ("finished", 100.0 + seed, 150.0 + seed)
            for seed in (3, 4)}
    fake_sweep(tmp_path / "more", ["--learner", "lpdm", "--seed", "3,4",
                                   "--total-steps", "5000"], more)
    build_report(tmp_path, out=tmp_path / "report")
    with (tmp_path / "report" / "scores.csv").open() as f:
        rows = {(row["learner"], row["variant"]): row for row in csv.DictReader(f)}
    assert set(rows) == {("bp", ""), ("lpdm", ""), ("lpdm", "sparse=true")}
    assert rows["lpdm", ""]["runs"] == "5"
    assert rows["lpdm", "sparse=true"]["poi_vs_lpdm_at_defaults_final_score"] == "1"


def test_an_archive_reproduces_its_report_without_the_run_directories(synthetic, tmp_path,
                                                                      capsys):
    build_report(synthetic)
    first = {name: (synthetic / "report" / name).read_text()
             for name in ("scores.csv", "runs.csv", "report.md")}
    committed = tmp_path / "committed"
    committed.mkdir()
    shutil.copy(synthetic / "report" / "archive.npz", committed)
    shutil.rmtree(synthetic)  # the study's machine is gone; its archive was committed
    assert main(["report", str(committed / "archive.npz"), "--out", str(tmp_path / "again")]) \
        == 0
    capsys.readouterr()
    def body(text: str) -> list[str]:  # the title and first line name the source
        return [line for line in text.splitlines()
                if not line.startswith("# lpdm report") and " runs in " not in line]

    for name, text in first.items():
        assert body((tmp_path / "again" / name).read_text()) == body(text), name


def test_the_archives_of_a_study_s_parts_merge_into_one_report(tmp_path, capsys):
    for env, part in (("CartPole-v1", "part1"), ("Pendulum-v1", "part2")):
        runs = {(env, learner, seed): ("finished", float(10 * seed + (learner == "bp")),
                                       float(20 * seed)) for learner in ("bp", "lpdm")
                for seed in range(3)}
        fake_sweep(tmp_path / "study" / part, ["--env", env, "--learner", "bp,lpdm",
                                               "--seeds", "3"], runs)
        build_report(tmp_path / "study" / part)
    build_report(tmp_path / "study")  # both sweeps, read from their run directories
    archives = [str(tmp_path / "study" / part / "report" / "archive.npz")
                for part in ("part1", "part2")]
    assert main(["report", *archives, "--out", str(tmp_path / "merged")]) == 0
    with (tmp_path / "study" / "report" / "scores.csv").open() as f:
        together = list(csv.DictReader(f))
    with (tmp_path / "merged" / "scores.csv").open() as f:
        merged = list(csv.DictReader(f))
    assert len(merged) == 4 and merged == together

    assert main(["report", *archives]) == 2
    assert "a report of several sources needs --out" in capsys.readouterr().err
    assert main(["report", archives[0], archives[0], "--out", str(tmp_path / "twice")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CartPole-v1 reinforce bp seed 0 is both" in err


def test_archives_of_an_ablation_and_of_the_defaults_are_told_apart_when_merged(tmp_path):
    """The archive of a sweep with --sparse true, reported on its own, merged with the
    archive of the sweep at the defaults: its lpdm runs stay a variant of their own (as
    when both sweeps are read from one folder) instead of colliding with the defaults'."""
    defaults_and_sparse_sweeps(tmp_path)
    for part in ("main", "sparse"):
        build_report(tmp_path / part)
    with (tmp_path / "sparse" / "report" / "scores.csv").open() as f:
        assert [row["variant"] for row in csv.DictReader(f)] == [""]  # alone: no variant
    archives = [str(tmp_path / part / "report" / "archive.npz") for part in ("main", "sparse")]
    assert main(["report", *archives, "--out", str(tmp_path / "merged")]) == 0
    with (tmp_path / "merged" / "scores.csv").open() as f:
        rows = {(row["learner"], row["variant"]): row for row in csv.DictReader(f)}
    assert set(rows) == {("bp", ""), ("lpdm", ""), ("lpdm", "sparse=true")}
    assert rows["lpdm", "sparse=true"]["poi_vs_lpdm_at_defaults_final_score"] == "1"


def test_settings_follow_the_paper_s_environment_order_then_the_runs():
    """Hopper's runs first, an environment outside the paper suite between: the settings
    come CartPole, Hopper (the paper's order), then the other environment."""
    from lpdm.report.analysis import make_groups
    from lpdm.report.records import RunRecord

    def run(env: str, seed: int) -> RunRecord:
        return RunRecord(Path(env, str(seed)), env, "ppo", "bp", "", seed, "finished",
                         1.0, 1.0, 1.0, 100, 0.1, 0.05, 1.0)

    runs = [run("Hopper-v4", 0), run("MinAtar/Breakout-v1", 0), run("CartPole-v1", 0),
            run("Hopper-v4", 1)]
    assert [g.setting.env for g in make_groups(runs)] == [
        "CartPole-v1", "Hopper-v4", "MinAtar/Breakout-v1"]
    assert [r.seed for r in make_groups(runs)[1].runs] == [0, 1]


def test_minatar_scores_run_from_the_random_return_to_the_best_run_unless_none_beats_it():
    """MinAtar has random returns but no reference score: 0 is the random policy, 1 the best
    final score; where no run beats the random policy that scale has no sense: min-max."""
    from lpdm.report.analysis import make_groups, normalisations
    from lpdm.report.records import RunRecord

    def run(final: float, seed: int) -> RunRecord:
        return RunRecord(Path(str(seed)), "MinAtar/Breakout-v1", "dqn", "bp", "", seed,
                         "finished", final, final, final, 100, 0.1, 0.05, 1.0)

    scale = normalisations(make_groups([run(2.0, 0), run(6.0, 1)]))["dqn"]
    assert (scale.kind, scale.bounds) == ("random policy to best run",
                                          {"MinAtar/Breakout-v1": (0.43, 6.0)})
    assert "0 being the uniform random policy" in scale.describe()
    assert "1 the best final score of any run here" in scale.describe()
    below = normalisations(make_groups([run(0.1, 0), run(0.2, 1)]))["dqn"]
    assert (below.kind, below.bounds) == ("min-max", {"MinAtar/Breakout-v1": (0.1, 0.2)})


def test_suites_import_neither_torch_nor_gymnasium():
    """The module's own imports (the lpdm package's __init__ still imports torch)."""
    import lpdm.suites

    tree = ast.parse(Path(lpdm.suites.__file__).read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n.split(".")[0] for n in names if n} & {"torch", "gymnasium", "lpdm"}


def test_the_diagnostics_figure_adds_dfa_s_alignment_with_backpropagation(tmp_path, capsys):
    """dfa logs the cosine between its trunk update and backpropagation's: the diagnostics
    figure gets a panel for it (a fourth, wider figure), from the runs and from the archive;
    a report without such a learner keeps the three panels."""
    from lpdm.report.analysis import analyse
    from lpdm.report.collect import collect_runs
    from lpdm.report.figures import diagnostic_panels

    sweep = tmp_path / "dfa"
    assert main(["sweep", "--learner", "bp,dfa", "--total-steps", "600", "--no-progress",
                 "--out", str(sweep)]) == 0
    assert main(["report", str(sweep)]) == 0
    capsys.readouterr()
    fields = ["saturation", "distance_corr", "distance_entropy"]
    assert [f for f, _ in diagnostic_panels(analyse(collect_runs(sweep)))] == \
        [*fields, "bp_alignment"]
    archived = analyse(collect_runs(sweep / "report" / "archive.npz"))
    assert [f for f, _ in diagnostic_panels(archived)] == [*fields, "bp_alignment"]
    bp_alone = analyse([run for run in collect_runs(sweep) if run.learner == "bp"])
    assert [f for f, _ in diagnostic_panels(bp_alone)] == fields
    with Image.open(sweep / "report" / "diagnostics.png") as image:
        assert image.width > 4 * 4.6 * 90  # four panels of 4.6 inches at 100 dpi
