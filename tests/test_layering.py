"""Layering: the command line's help and a report from archives import neither torch nor
Gymnasium (so that ``lpdm --help`` answers at once and reports build anywhere)."""

import subprocess
import sys
from pathlib import Path

ARCHIVE = Path(__file__).parents[1] / "docs/results/minatar/archive.npz"


def test_help_and_reports_import_neither_torch_nor_gymnasium(tmp_path):
    code = f"""
import sys
import lpdm.report
from lpdm.cli import build_parser
build_parser().format_help()
from lpdm.report.build import build_report
build_report([r'{ARCHIVE}'], r'{tmp_path / "report"}')
heavy = [name for name in ('torch', 'gymnasium') if name in sys.modules]
assert not heavy, heavy
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "report" / "index.html").exists()
