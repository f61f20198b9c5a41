import subprocess
import sys

import pytest

from fusionrec import __version__
from fusionrec.cli import main


def test_info_lists_versions_and_demo_classes(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"fusionrec {__version__}" in out
    assert "scikit-learn" in out
    assert "Banana" in out
    assert "15 photos" in out


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_exits_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "fusionrec", "info"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Demo products" in done.stdout
