"""``lpdm leaderboard``: the committed page is the committed data's, the paragraph's rules
name the learner they say on tiny synthetic studies, and ``--check`` catches a stale page."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from lpdm.cli import main
from lpdm.report import leaderboard_page
from lpdm.report.archive import write_archive
from lpdm.report.leaderboard import Board, compute
from lpdm.report.leaderboard_page import build, page, stale
from lpdm.report.leaderboard_verdict import judge_board, summary
from lpdm.report.records import RunRecord

ROOT = Path(__file__).parents[1]
ARCHIVE = "docs/results/toy/archive.npz"
TOY = Board("ppo", (ARCHIVE,))


def test_the_committed_page_matches_a_rebuild():
    cause = stale(ROOT / "docs/results/leaderboard", build(ROOT))
    assert cause is None, f"{cause}: run `lpdm leaderboard --write docs/results/leaderboard`"


def _run(env: str, learner: str, seed: int, final: float) -> RunRecord:
    return RunRecord(path=Path(f"/toy/{env}/{learner}/s{seed}"), env=env, algo="ppo",
                     learner=learner, variant="", seed=seed, status="finished",
                     final_score=final, max_score=final, eval_score=math.nan,
                     total_steps=1000, seconds_per_iteration=0.1 * (2 if learner == "lpdm"
                                                                    else 1),
                     update_seconds_per_iteration=math.nan, seconds_per_1k_steps=math.nan,
                     stored_options={}, stored_metrics={
                         "global_step": np.array([1000.0]), "episodic_return": np.array([final])})


def _toy_study(root: Path, finals: dict[str, tuple[float, float]]) -> None:
    """PPO on CartPole and Acrobot, 5 seeds: each learner's final scores start at
    ``finals[learner]`` (CartPole, Acrobot) and rise by 1 per seed."""
    envs = ("CartPole-v1", "Acrobot-v1")
    runs = [_run(env, learner, s, start + s) for learner, starts in finals.items()
            for env, start in zip(envs, starts, strict=True) for s in range(5)]
    (root / ARCHIVE).parent.mkdir(parents=True)
    write_archive(root / ARCHIVE, runs, Path("/toy"))


BP, FROZEN = (480.0, -90.0), (100.0, -300.0)  # normalised: bp about 0.98 and 1.0


def test_a_learner_run_on_fewer_environments_is_compared_with_bp_there_and_cannot_meet_it(
        tmp_path):
    """dfa, at bp's level on CartPole alone: its ratio is bp's on CartPole, not on the
    suite, and the goal needs every environment."""
    _toy_study(tmp_path, {"bp": BP, "frozen": FROZEN, "lpdm": (150.0, -250.0)})
    runs = [dataclasses.replace(_run("CartPole-v1", "dfa", s, BP[0] + s),
                                sweep=Path("/toy/dfa-sweep")) for s in range(5)]
    extra = tmp_path / "docs/results/toy2/archive.npz"
    extra.parent.mkdir(parents=True)
    write_archive(extra, runs, Path("/toy"))
    board = compute(tmp_path, Board("ppo", (ARCHIVE, "docs/results/toy2/archive.npz")))
    dfa = board.standing("dfa")
    assert dfa.environments == 1 and dfa.ratio_to_bp.value == pytest.approx(1.0)
    # listed after the learners run on both, though its pooled IQM (CartPole alone) is higher
    assert dfa.normalised_iqm.value > board.standing("lpdm").normalised_iqm.value
    assert board.standings[-1] is dfa
    assert "Best normalised IQM first, the learners studied on fewer environments after the " \
        "others." in page([board])
    verdict = judge_board(board)
    # the closest is chosen among the learners run on both environments: lpdm
    assert (verdict.learner, verdict.meets_goal) == ("lpdm", False)
    assert "Studied on fewer environments so far" in verdict.text and "`dfa` (1 of 2: 1.00" \
        in verdict.text
    # dfa ran in another sweep than bp's: no time ratio, and the page says why
    assert not dfa.time_vs_bp.settings
    assert "Time per iteration n/a (`dfa`): no environment where it ran in the same sweep " \
        "as `bp`" in page([board])


@pytest.mark.parametrize("lpdm, guided, use, meets", [
    # lpdm at about 0.98x bp and above frozen on both: it meets the goal
    ((470.0, -95.0), (200.0, -200.0), "lpdm", True),
    # neither near bp: the higher ratio (guided, about 0.7x) is named the closest
    ((150.0, -250.0), (300.0, -150.0), "lpdm-guided", False),
    # lpdm near bp but below frozen on Acrobot (frozen near bp there): not met, the closest
    ((470.0, -95.0), (200.0, -200.0), "lpdm", False),
], ids=["meets", "closest", "below-frozen"])
def test_the_rules_name_the_learner_that_meets_the_goal_or_comes_closest(
        tmp_path, lpdm, guided, use, meets):
    frozen = (FROZEN[0], -92.0) if use == "lpdm" and not meets else FROZEN
    _toy_study(tmp_path, {"bp": BP, "frozen": frozen, "lpdm": lpdm, "lpdm-guided": guided})
    board = compute(tmp_path, TOY)
    verdict = judge_board(board)
    assert (verdict.learner, verdict.meets_goal) == (use, meets)
    text = summary([board])
    if meets:
        assert "It is met under PPO, not under DQN." in text
        assert "Under PPO use `lpdm`: it **meets the goal**, at 0.98× [" in text
        assert "above `frozen` on all 2 of 2 environments" in text
    else:
        assert "It is not met." in text
        assert f"the closest is `{use}`, at " in text
    if use == "lpdm-guided":
        assert "What bounds it: it is short of the 0.9× goal (its 95% interval lies below)" \
            in text
        assert "`lpdm` scores higher" not in text  # guided is higher on both environments
        # every environment under 0.9x bp is named with both values, furthest below first
        assert "is within 0.9× of `bp`'s normalised IQM on no environment, and under 0.9× " \
            "on CartPole-v1 (0.60 against 0.98), Acrobot-v1 (0.85 against 1.00)." in text
    if use == "lpdm" and not meets:
        assert "above `frozen` on only 1 of 2 environments (not on Acrobot-v1;" in text
    # lpdm's runs took twice bp's time per iteration in both environments
    assert board.standing("lpdm").time_vs_bp.median == pytest.approx(2.0)



def test_a_tuned_board_has_its_own_section_and_figure_and_does_not_decide_the_goal(
        tmp_path):
    """The same runs read as PPO at the defaults, where lpdm meets the goal, and as PPO
    after equal tuning: the tuned board is named, drawn and judged on its own, and the goal
    (asked of the defaults) is judged on the defaults' board alone."""
    _toy_study(tmp_path, {"bp": BP, "frozen": FROZEN, "lpdm": (470.0, -95.0)})
    tuned = compute(tmp_path, dataclasses.replace(TOY, tuned=True))
    assert (tuned.key, tuned.title) == ("ppo-tuned", "PPO after equal tuning")
    assert judge_board(tuned).meets_goal
    assert "It is not met." in summary([tuned])
    assert "It is met under PPO, not under DQN." in summary([compute(tmp_path, TOY), tuned])
    text = page([tuned])
    assert "## PPO after equal tuning" in text and "](ppo-tuned.png)" in text
    assert "Under PPO after equal tuning use `lpdm`" in text
    assert stale(tmp_path, [tuned]) is not None
    leaderboard_page.write(tmp_path, [tuned])
    assert (tmp_path / "ppo-tuned.png").stat().st_size > 0 and stale(tmp_path, [tuned]) is None


def test_a_tuned_board_reads_what_tuning_changed_against_the_defaults(tmp_path):
    """lpdm tuned scores above its defaults' runs on both environments (every tuned run
    higher: significant after Holm), bp the same as at its defaults; dfa, tuned but
    without runs at the defaults, is not compared."""
    _toy_study(tmp_path, {"bp": BP, "frozen": FROZEN, "lpdm": (470.0, -95.0),
                          "dfa": (400.0, -100.0)})
    defaults = "docs/results/toy-defaults/archive.npz"
    (tmp_path / defaults).parent.mkdir(parents=True)
    write_archive(tmp_path / defaults,
                  [_run(env, learner, s, start + s)
                   for learner, starts in {"bp": BP, "lpdm": (150.0, -250.0)}.items()
                   for env, start in zip(("CartPole-v1", "Acrobot-v1"), starts, strict=True)
                   for s in range(5)], Path("/toy"))
    board = compute(tmp_path, dataclasses.replace(TOY, tuned=True, defaults=(defaults,)))
    effects = {e.learner: e for e in board.tuning_effects}
    assert set(effects) == {"bp", "lpdm"}
    lpdm, bp = effects["lpdm"], effects["bp"]
    assert lpdm.higher == ("CartPole-v1", "Acrobot-v1") and lpdm.lower == ()
    assert lpdm.versus_defaults.value == 1.0 and lpdm.ratio.value > 2
    assert lpdm.tuned.value == pytest.approx(board.standing("lpdm").normalised_iqm.value)
    assert bp.higher == bp.lower == () and bp.versus_defaults.value == 0.5
    assert bp.ratio.value == pytest.approx(1.0)
    text = page([board])
    assert "PPO after equal tuning: what tuning changed." in text
    cartpole = board.standing("lpdm").per_env["CartPole-v1"]
    assert f"| `lpdm` | {cartpole:.2f} ({lpdm.per_env_defaults['CartPole-v1']:.2f}) ↑ |" in text
    assert ("Tuning moved `lpdm`'s normalised IQM to " in summary([board])
            and "its own at the defaults (significantly higher on 2 of 2 environments, lower "
            "on 0) and `bp`'s normalised IQM to 1.00×" in summary([board]))
    # without committed runs at the defaults, the section is not there
    alone = compute(tmp_path, dataclasses.replace(TOY, tuned=True, defaults=("nowhere",)))
    assert alone.tuning_effects == () and "what tuning changed" not in page([alone])


def test_a_published_result_is_set_beside_our_learner_that_follows_it(tmp_path):
    """Artificial Dopamine's CartPole-v1 value beside `layerwise`'s DQN runs there (IQM of
    400..404 and P(> bp) 0 against bp's 480..484); no runs on LunarLander-v3 yet."""
    runs = [dataclasses.replace(_run("CartPole-v1", learner, s, start + s), algo="dqn")
            for learner, start in (("bp", 480.0), ("frozen", 20.0), ("layerwise", 400.0))
            for s in range(5)]
    (tmp_path / ARCHIVE).parent.mkdir(parents=True)
    write_archive(tmp_path / ARCHIVE, runs, Path("/toy"))
    board = compute(tmp_path, Board("dqn", (ARCHIVE,)))
    cartpole, lunar = (next(c for c in board.published if c.published.env == env)
                       for env in ("CartPole-v1", "LunarLander-v3"))
    assert (cartpole.published.learner, cartpole.published.score) == ("layerwise", 500.0)
    assert (cartpole.runs, cartpole.steps) == (5, 1000)
    assert cartpole.final.value == pytest.approx(402.0)
    assert cartpole.bp_final.value == pytest.approx(482.0)
    assert cartpole.versus_bp.value == pytest.approx(0.0)
    assert lunar.runs == 0
    text = page([board])
    assert ("| CartPole-v1 | Artificial Dopamine | about 500 | 300k | its classic-control "
            "learning curves | `layerwise` | 402 [") in text
    assert "| LunarLander-v3 | Artificial Dopamine | about 260 | 1M |" in text
    assert "no committed runs yet" in text
    # no published result on the PPO board
    _toy_study(tmp_path / "ppo", {"bp": BP, "frozen": FROZEN})
    assert compute(tmp_path / "ppo", TOY).published == ()


def test_a_board_whose_bp_is_level_with_frozen_cannot_rank_trunks(tmp_path):
    _toy_study(tmp_path, {"bp": BP, "frozen": (BP[0] - 0.5, BP[1] - 0.5),
                          "lpdm": (150.0, -250.0)})
    text = judge_board(compute(tmp_path, TOY)).text
    assert text.startswith("Under PPO `bp` itself is not shown above `frozen` (P(> `frozen`) "
                           "0.60 [")
    assert "at these settings PPO **cannot rank trunks**" in text
    _toy_study(tmp_path / "apart", {"bp": BP, "frozen": FROZEN, "lpdm": (150.0, -250.0)})
    assert "cannot rank trunks" not in judge_board(compute(tmp_path / "apart", TOY)).text


def test_what_bounds_the_closest_includes_its_last_layer_beside_bps(tmp_path):
    """Per-layer diagnostics kept in the archive: the closest learner's last hidden layer
    (IQM over seeds, median over environments) beside bp's, and dfa's alignment, at its last
    and at its first hidden layer, in the page's layer table."""
    layers = {"bp": (0.5, 0.01, None), "lpdm": (0.99, 0.7, None), "dfa": (0.8, 0.0, 0.6)}
    runs = []
    for learner, (corr, saturated, alignment) in layers.items():
        for env, start in zip(("CartPole-v1", "Acrobot-v1"), BP if learner != "lpdm"
                              else (150.0, -250.0), strict=True):
            if learner == "dfa" and env == "Acrobot-v1":
                continue  # at bp's level on CartPole alone: not ranked
            for s in range(5):
                run = _run(env, learner, s, start + s)
                metrics = run.stored_metrics
                metrics["actor_l1_distance_corr"] = np.array([1.0])  # the first layer: unread
                metrics["actor_l2_distance_corr"] = np.array([corr])
                metrics["actor_l2_saturation"] = np.array([saturated])
                if alignment is not None:
                    metrics["actor_l1_bp_alignment"] = np.array([alignment / 6])
                    metrics["actor_l2_bp_alignment"] = np.array([alignment])
                runs.append(run)
    runs += [_run(env, "frozen", s, start + s) for env, start in
             zip(("CartPole-v1", "Acrobot-v1"), FROZEN, strict=True) for s in range(5)]
    (tmp_path / ARCHIVE).parent.mkdir(parents=True)
    write_archive(tmp_path / ARCHIVE, runs, Path("/toy"))
    board = compute(tmp_path, TOY)
    assert board.standing("dfa").layer_readings["bp_alignment"] == pytest.approx(0.6)
    assert judge_board(board).learner == "lpdm"
    text = page([board])
    assert ("its policy's last hidden layer ends training at corr(target, output distances) "
            "0.99 (`bp`: 0.50), saturated units 70% (`bp`: 1%)") in text
    assert "| `dfa` | 0.80 | 0% | 0.60 | 0.10 |" in text  # and its first layer's alignment
    assert "| `lpdm` | 0.99 | 70% | — | — |" in text
    assert "first hidden layer: cosine" not in text.split("What bounds it")[1].split("\n")[0]
    assert "| `frozen` |" not in text.split("last hidden layer at the end of training")[1]


def test_a_timing_sweep_gives_every_learner_its_cost_side_by_side(tmp_path):
    """With a committed timing sweep, the costs come from its runs alone: dfa, whose scored
    runs ran in another sweep than bp's, is timed there; lpdm's slower board runs do not
    count; a learner the timing sweep lacks is n/a, and the page says why."""
    _toy_study(tmp_path, {"bp": BP, "frozen": FROZEN, "lpdm": (150.0, -250.0)})
    extra = tmp_path / "docs/results/toy2/archive.npz"
    extra.parent.mkdir(parents=True)
    write_archive(extra, [dataclasses.replace(_run(env, "dfa", s, start + s),
                                              sweep=Path("/toy/dfa-sweep"))
                          for env, start in zip(("CartPole-v1", "Acrobot-v1"), BP, strict=True)
                          for s in range(5)], Path("/toy"))
    seconds = {"bp": 0.1, "lpdm": 0.15, "dfa": 0.3}  # frozen: not in the timing sweep
    timing = tmp_path / "docs/results/timing/archive.npz"
    timing.parent.mkdir(parents=True)
    write_archive(timing, [dataclasses.replace(
        _run("CartPole-v1", learner, s, 0.0), seconds_per_iteration=t * (1 + 0.01 * s),
        sweep=Path("/toy/timing")) for learner, t in seconds.items() for s in range(3)],
        Path("/toy"))
    board = compute(tmp_path, Board("ppo", (ARCHIVE, "docs/results/toy2/archive.npz"),
                                    timing="docs/results/timing"))
    assert board.timing == "docs/results/timing"
    assert board.standing("dfa").time_vs_bp.median == pytest.approx(3.0)
    assert board.standing("lpdm").time_vs_bp.median == pytest.approx(1.5)
    assert not board.standing("frozen").time_vs_bp.settings
    text = page([board])
    assert "Times per iteration from the timing sweep `docs/results/timing`" in text
    assert "Time per iteration n/a (`frozen`): not in the timing sweep" in text
    # without the folder committed the board falls back to its own sweeps
    untimed = compute(tmp_path, Board("ppo", (ARCHIVE, "docs/results/toy2/archive.npz"),
                                      timing="docs/results/none"))
    assert untimed.timing is None and not untimed.standing("dfa").time_vs_bp.settings
    assert untimed.standing("lpdm").time_vs_bp.median == pytest.approx(2.0)


def test_the_page_lists_registered_learners_without_runs_and_the_missing_update_times(
        tmp_path):
    _toy_study(tmp_path, {"bp": BP, "frozen": FROZEN, "lpdm": (470.0, -95.0)})
    text = page([compute(tmp_path, TOY)])
    assert "`lpdm-guided` (BP-free)" in text.split("No committed runs yet under PPO: ")[1]
    assert "Update times: not in the committed data" in text
    assert "| `bp` | backpropagation | 2 (10) |" in text


def test_check_fails_on_a_stale_page_and_passes_after_write(tmp_path, monkeypatch, capsys):
    _toy_study(tmp_path, {"bp": BP, "frozen": FROZEN, "lpdm": (470.0, -95.0)})
    monkeypatch.setattr(leaderboard_page, "BOARDS", (TOY,))
    out = tmp_path / "board"
    argv = ["leaderboard", "--root", str(tmp_path)]
    assert main([*argv, "--check", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([*argv, "--write", str(out)]) == 0
    assert (out / "ppo.png").stat().st_size > 0
    assert main([*argv, "--check", str(out)]) == 0
    readme = out / "README.md"
    readme.write_text(readme.read_text().replace("0.98", "0.99", 1))
    assert main([*argv, "--check", str(out)]) == 1
    assert "no longer matches the committed data; run `lpdm leaderboard --write" in \
        capsys.readouterr().err
    assert main([*argv, "--write", str(out)]) == 0
    (out / "ppo.png").unlink()
    assert main([*argv, "--check", str(out)]) == 1
    assert "lacks the figure ppo.png" in capsys.readouterr().err


def test_minatar_games_have_a_board_of_their_own(tmp_path):
    """DQN runs on CartPole and on MinAtar Breakout in one archive: the DQN board reads
    CartPole alone (fixed references, published classic-control results), the MinAtar
    board Breakout alone (random policy to best run, Artificial Dopamine's Breakout), and
    only the first
    decides the goal. Before any MinAtar run is committed its board says where they will be
    read from."""
    minatar = Board("dqn", (), ("docs/results/toy/minatar",), minatar=True,
                    settings="MinAtar's settings")
    empty = compute(tmp_path, minatar)
    assert (empty.key, empty.title, empty.standings) == ("dqn-minatar", "DQN on MinAtar", ())
    text = page([empty])
    assert ("No committed runs yet (MinAtar's settings): the board reads "
            "`docs/results/toy/minatar` once committed.") in text
    assert "| MinAtar/Breakout-v1 | Artificial Dopamine | about 28 | 5M |" in text
    assert "Under DQN on MinAtar no BP-free learner has committed runs yet." in text

    runs = [dataclasses.replace(_run(env, learner, s, start + s), algo="dqn")
            for env, finals in (("CartPole-v1", {"bp": 480.0, "frozen": 20.0, "dfa": 470.0}),
                                ("MinAtar/Breakout-v1", {"bp": 9.0, "frozen": 3.0, "dfa": 1.0}))
            for learner, start in finals.items() for s in range(5)]
    for folder in ("toy", "toy/minatar"):
        (tmp_path / "docs/results" / folder).mkdir(parents=True, exist_ok=True)
        write_archive(tmp_path / f"docs/results/{folder}/archive.npz", runs, Path("/toy"))
    classic = compute(tmp_path, Board("dqn", (ARCHIVE,)))
    games = compute(tmp_path, minatar)
    assert (classic.envs, games.envs) == (("CartPole-v1",), ("MinAtar/Breakout-v1",))
    assert classic.normalisation.kind == "fixed references"
    assert games.normalisation.kind == "random policy to best run" and games.awaited == ()
    assert games.normalisation.bounds == {"MinAtar/Breakout-v1": (0.43, 13.0)}
    assert [c.published.env for c in classic.published] == ["CartPole-v1", "LunarLander-v3"]
    assert [c.published.env for c in games.published] == ["MinAtar/Breakout-v1"]
    # from Breakout's random return 0.43: dfa's IQM (of 1..5) over bp's (of 9..13)
    ratio = games.standing("dfa").ratio_to_bp.value
    assert ratio == pytest.approx((3 - 0.43) / (11 - 0.43))
    assert ratio < 0.5 < classic.standing("dfa").ratio_to_bp.value
    paragraph = summary([classic, games])
    assert "It is met under DQN, not under PPO." in paragraph
    assert "Under DQN on MinAtar no BP-free learner meets the goal; the closest is `dfa`" in \
        paragraph
    text = page([classic, games])
    assert "## DQN on MinAtar" in text and "](dqn-minatar.png)" in text
    assert "From `docs/results/toy/minatar` (MinAtar's settings): 1 environment (" in text
    # a learner above every other moves the best run, not the ratio between two learners
    better = [dataclasses.replace(_run("MinAtar/Breakout-v1", "layerwise", s, 20.0 + s),
                                  algo="dqn") for s in range(5)]
    (tmp_path / "docs/results/toy/minatar2").mkdir()
    write_archive(tmp_path / "docs/results/toy/minatar2/archive.npz", runs + better,
                  Path("/toy"))
    moved = compute(tmp_path, dataclasses.replace(minatar, later=("docs/results/toy/minatar2",)))
    assert moved.normalisation.bounds == {"MinAtar/Breakout-v1": (0.43, 24.0)}
    assert moved.standing("dfa").ratio_to_bp.value == pytest.approx(ratio)
