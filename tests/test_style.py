import ast
import configparser
import subprocess
import sys
from pathlib import Path

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


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every charlm module `path` imports anywhere in it: at the top, inside a function (a lazy import)
    or under `if TYPE_CHECKING:` (a type-only one) all make it depend on that module. A package counts
    only where its own names are imported (`from charlm import __version__`), not its submodules."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found |= submodules | ({base} if len(submodules) < len(node.names) else set())
    return (found & modules) - {name}


def test_no_two_modules_import_each_other():
    """One module per job along the data's path: a module that imports one which imports it back (even
    lazily, even for a type hint) is two jobs tangled, and a newcomer cannot read either first."""
    paths = {module_name(path): path for path in (REPO / "charlm").rglob("*.py")}
    graph = {name: imported_modules(path, set(paths)) for name, path in paths.items()}
    assert "charlm.config" in graph["charlm.model"], "the graph misses plain imports: the test would pass for nothing"

    def cycle_from(start: str) -> list[str] | None:
        """The shortest import path from `start` back to itself, if any (breadth first)."""
        paths_to = {start: [start]}
        frontier = [start]
        while frontier:
            following = []
            for module in frontier:
                for imported in sorted(graph[module]):
                    if imported == start:
                        return paths_to[module] + [start]
                    if imported not in paths_to:
                        paths_to[imported] = paths_to[module] + [imported]
                        following.append(imported)
            frontier = following
        return None

    cycles = {" -> ".join(cycle) for name in sorted(graph) if (cycle := cycle_from(name))}
    assert not cycles, "modules that import each other:\n" + "\n".join(sorted(cycles))


def test_only_the_vocabularies_read_a_piece_vocabularys_own_fields():
    """A sentencepiece vocabulary's pieces, processor and byte ids are pieces.py's: the sampler, the
    templates and the server read them past the `Vocabulary` protocol, and constraints.py took <unk>
    for a character (its text is U+FFFD) where the vocabulary says it writes none. They ask it instead."""
    private = {"pieces", "processor", "byte_ids"}
    owners = {REPO / "charlm" / "pieces.py", REPO / "charlm" / "vocab.py"}
    found = [
        f"{path.relative_to(REPO)}:{node.lineno}: .{node.attr}"
        for path in sorted((REPO / "charlm").rglob("*.py"))
        if path not in owners
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr in private and ast.unparse(node.value).endswith("vocab")
    ]
    assert not found, "read past the Vocabulary protocol:\n" + "\n".join(found)


def test_no_file_holds_a_merge_conflict():
    """A conflict left in a merge reached main once (docs/serve.md, its error table): ruff reads only
    Python, and no docs test looked at that table. Every text file of the project is checked for git's
    markers (read from the tree, not from git, so that a copy without .git is checked too)."""
    roots = [REPO / name for name in ("charlm", "tests", "bench", "docs", ".ci")]
    files = [*REPO.glob("*.md"), *REPO.glob("*.cfg"), *(p for root in roots for p in root.rglob("*") if p.is_file())]
    texts = [
        p
        for p in files
        if p.suffix in {".py", ".md", ".cfg", ".sh", ".html", ".js", ".css", ".json"} or p.parent.name == ".ci"
    ]
    markers = ("<" * 7 + " ", "=" * 7 + "\n", ">" * 7 + " ")
    conflicted = []
    for path in texts:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        conflicted += [f"{path.relative_to(REPO)}:{i + 1}" for i, line in enumerate(lines) if line.startswith(markers)]
    assert len(texts) > 50, "almost no files found: the test would pass for nothing"
    assert not conflicted, f"merge conflict markers: {conflicted}"
