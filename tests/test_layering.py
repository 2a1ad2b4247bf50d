"""Layering: the command line's help, a report from archives, the claims table and the
leaderboard import neither torch nor Gymnasium (so that ``lpdm --help`` answers at once and
reports build anywhere)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
ARCHIVE = ROOT / "docs/results/minatar/archive.npz"


def test_help_reports_claims_and_leaderboard_import_neither_torch_nor_gymnasium(tmp_path):
    code = f"""
import sys
import lpdm.report
from lpdm.cli import build_parser
build_parser().format_help()
from lpdm.report.build import build_report
build_report([r'{ARCHIVE}'], r'{tmp_path / "report"}')
from pathlib import Path
from lpdm.report.claims import CLAIMS
from lpdm.report.claims_page import claims_table
# an archive, a runs.csv and the bench tables (the suite's claims are slower, alike)
claims_table(Path(r'{ROOT}'), tuple(c for c in CLAIMS if len(c.sources) == 1
                                    and "suite" not in c.sources[0]))
from lpdm.report.leaderboard import Board
from lpdm.report.leaderboard_page import build, page
page(build(Path(r'{ROOT}'), (Board('dqn', ('docs/results/dqn/runs.csv',)),)))
heavy = [name for name in ('torch', 'gymnasium') if name in sys.modules]
assert not heavy, heavy
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "report" / "index.html").exists()
