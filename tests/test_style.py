import subprocess
import sys

from .conftest import REPO


def test_code_is_ruff_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=REPO, check=False, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
