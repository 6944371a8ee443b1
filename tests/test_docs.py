"""The docs stay true: the option reference is what the commands are, and every link leads somewhere."""

import importlib.util
import re

import pytest

from .conftest import REPO

DOCS = [REPO / "README.md", REPO / "README.zh.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_option_reference_is_generated_from_the_commands():
    spec = importlib.util.spec_from_file_location("make_cli_md", REPO / "docs" / "make_cli_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert written == module.reference(), "docs/cli.md is stale: run python docs/make_cli_md.py"


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
