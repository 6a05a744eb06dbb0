"""The command line: ``vmkit tour`` runs the same calls on both backends and reports agreement."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from vmkit import cli, tour

pytestmark = pytest.mark.native_only


def test_tour_model_agrees_with_the_kernel_on_every_step() -> None:
    """The main job: every step's answer from the model equals the real kernel's."""
    out = io.StringIO()
    assert tour.run(out=out) == 0
    text = out.getvalue()
    assert "MODEL DIFFERS" not in text
    steps = sum(1 for line in text.splitlines() if "[model agrees]" in line)
    assert f"The model matched the kernel on {steps} of {steps} steps." in text
    assert "SIGSEGV SEGV_ACCERR" in text and "[heap]" in text


def test_python_dash_m_runs_the_cli() -> None:
    """``python -m vmkit tour`` is the same entry point."""
    result = subprocess.run([sys.executable, "-m", "vmkit", "tour"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "matched the kernel" in result.stdout


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad command line exits 2 with argparse's message, not a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
