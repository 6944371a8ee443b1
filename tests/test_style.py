import configparser
import subprocess
import sys

from .conftest import REPO


def test_code_is_ruff_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=REPO, check=False, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_file_the_package_reads_is_installed_with_it():
    """`pip install -e` reads the source tree, so a page or script missing from setup.cfg's package_data
    would pass every test here and be absent from a user's wheel."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = {
        f"{package.replace('.', '/')}/{name.strip()}"
        for package, names in config["options.package_data"].items()
        for name in names.split(",")
    }
    shipped = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "charlm").rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert shipped, "no data files found: the test would pass for nothing"
    assert shipped <= listed, f"not in setup.cfg's [options.package_data]: {sorted(shipped - listed)}"
