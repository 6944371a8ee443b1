import ast
import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, import_or_missing


def test_code_is_ruff_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=REPO, check=False, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_code_runs_on_the_oldest_python_setup_cfg_allows():
    """CI runs one Python (3.11), and ruff's target-version checks syntax, not APIs: a call new in 3.11
    (tomllib, datetime.UTC, Task.cancelling) would pass every check here and break a 3.10 user. vermin
    knows each API's first version. `long` is excluded: it reads torch's `tensor.long()` as Python 2's
    long, and a file needing both 2.x and 3.x is passed unchecked, with a note ("incompatible versions")."""
    import_or_missing("vermin")
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    oldest = config["options"]["python_requires"].removeprefix(">=").strip()
    command = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]  # it has no __main__
    command += [f"--target={oldest}-", "--violations", "--no-tips"]
    command += ["--eval-annotations", "--backport", "typing_extensions", "--exclude", "long", "--processes=1"]
    result = subprocess.run([*command, "charlm"], cwd=REPO, check=False, capture_output=True, text=True)
    said = result.stdout + result.stderr
    assert result.returncode == 0 and "incompatible versions" not in said, (
        f"vermin {' '.join(command[3:])} charlm:\n{said}"
    )


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


def imported_from(node: ast.ImportFrom, path: Path) -> str:
    """The module a `from ... import` in `path` reads from, its dots resolved (`from .. import x`: charlm)."""
    if not node.level:
        return node.module or ""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(parent + ([node.module] if node.module else []))


def string_mappings(tree: ast.Module) -> dict[str, list[str]]:
    """A module's top-level dicts whose values are strings, by name, with their values: charlm/__init__'s
    HOMES (each public name's module), which its lazy imports read."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(values, dict) and all(isinstance(value, str) for value in values.values()):
                found[node.targets[0].id] = list(values.values())
    return found


def names_given(name: ast.expr | None, mappings: dict[str, list[str]]) -> list[str]:
    """The module names an import call's argument may be: a string written out, or an f-string whose one
    placeholder looks a name up in a top-level dict of strings (`f".{HOMES[name]}"`: each of its values)."""
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return [name.value]
    if not isinstance(name, ast.JoinedStr):
        return []
    holes = [part for part in name.values if isinstance(part, ast.FormattedValue)]
    if len(holes) != 1:
        return []
    looked_up = holes[0].value
    if not (isinstance(looked_up, ast.Subscript) and isinstance(looked_up.value, ast.Name)):
        return []
    return [
        "".join(value if part is holes[0] else part.value for part in name.values)
        for value in mappings.get(looked_up.value.id, [])
    ]


def imported_by_call(node: ast.Call, path: Path, mappings: dict[str, list[str]]) -> set[str]:
    """The modules a call `importlib.import_module(NAME)` (NAME relative: from `path`'s package, as with
    `__package__`) or `__import__(NAME)` in `path` imports, where NAME is written out or read from one of
    the module's `mappings` (`names_given`); else none."""
    called = ast.unparse(node.func).rpartition(".")[2]
    if called not in ("import_module", "__import__"):
        return set()
    found = set()
    for name in filter(None, names_given(node.args[0] if node.args else None, mappings)):
        level = len(name) - len(name.lstrip("."))
        relative = ast.ImportFrom(module=name[level:] or None, names=[], level=level)
        found.add(imported_from(relative, path) if level else name)
    return found


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every charlm module `path` imports anywhere in it: at the top, inside a function (a lazy import,
    by an import statement or by name through importlib, `HOMES[name]`'s too) or under `if TYPE_CHECKING:` (a type-only one)
    all make it depend on that module. A package counts
    where its own names are imported (`from charlm import __version__`), and where one of its submodules
    is from outside it: the import runs the package's __init__ first (runs.py importing a leaf of export/
    would run export/__init__, which imports checkpoint, which imports runs). Not charlm's own __init__,
    which imports its names on first use (`__getattr__`), nor a package from within it, already run."""
    name = module_name(path)
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mappings = string_mappings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = imported_from(node, path)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found |= submodules | ({base} if len(submodules) < len(node.names) else set())
        elif isinstance(node, ast.Call):
            found |= imported_by_call(node, path, mappings)
    own = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 2)}  # name and its packages
    run_first = {package for module in found for package in packages_of(module)} - own - {"charlm"}
    return ((found | run_first) & modules) - {name}


def packages_of(module: str) -> list[str]:
    """The packages whose __init__ importing `module` runs: charlm.serve.app -> charlm, charlm.serve."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def test_no_two_modules_import_each_other():
    """One module per job along the data's path: a module that imports one which imports it back (even
    lazily, even for a type hint) is two jobs tangled, and a newcomer cannot read either first."""
    paths = {module_name(path): path for path in (REPO / "charlm").rglob("*.py")}
    graph = {name: imported_modules(path, set(paths)) for name, path in paths.items()}
    assert "charlm.config" in graph["charlm.model"], "the graph misses plain imports: the test would pass for nothing"
    # cli imports charlm.commands.train, never charlm.commands itself, yet the import runs commands/__init__
    assert "charlm.commands" in graph["charlm.cli"], "the graph misses the packages an import runs"

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


def test_import_graph_sees_imports_made_through_importlib(tmp_path, monkeypatch):
    """A lazy import by name (`importlib.import_module("charlm.x")`, a relative one from the module's
    package, `__import__`) ties two modules as an import statement does: missed, a cycle made so passes."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    probe = tmp_path / "charlm" / "serve" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import importlib\n\ndef late():\n    importlib.import_module('charlm.trainer')\n"
                     "    importlib.import_module('..sampler', __package__)\n    __import__('charlm.export.html')\n"
                     "    importlib.import_module(NAME)\n", encoding="utf-8")  # fmt: skip
    modules = {"charlm", "charlm.trainer", "charlm.sampler", "charlm.export", "charlm.export.html", "charlm.serve"}
    found = imported_modules(probe, modules | {"charlm.serve.probe"})
    assert found == {"charlm.trainer", "charlm.sampler", "charlm.export", "charlm.export.html"}


def test_import_graph_sees_the_lazy_imports_of_a_mapping_of_names_to_modules(tmp_path, monkeypatch):
    """charlm/__init__.py imports each public name's module on first use, `f".{HOMES[name]}"`: the graph saw
    those imports only through the TYPE_CHECKING block repeating them, so a name added to HOMES alone was
    missed, and a cycle made through it passed."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    probe = tmp_path / "charlm" / "__init__.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import importlib\n\nHOMES = {'train': 'trainer', 'generate': 'sampler'}\n\n"
                     "def __getattr__(name):\n    return importlib.import_module(f'.{HOMES[name]}', __name__)\n",
                     encoding="utf-8")  # fmt: skip
    found = imported_modules(probe, {"charlm", "charlm.trainer", "charlm.sampler", "charlm.model"})
    assert found == {"charlm.trainer", "charlm.sampler"}


def private_reaches(path: Path, modules: set[str]) -> list[str]:
    """Where `path` uses another charlm module's private name: `from .x import _y`, or `x._y` where x is
    a charlm module it imported (`from . import x`, `import charlm.x as x`, `charlm.x`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_names, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            module_names |= {alias.asname or alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and (base := imported_from(node, path)).startswith("charlm"):
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    module_names.add(alias.asname or alias.name)
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno}: {base}.{alias.name}")
    for node in ast.walk(tree):
        private = isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        if private and ast.unparse(node.value) in module_names | modules:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_anothers_private_names(tmp_path):
    """A module's `_name` is its own business, free to change: another module that uses it is tied to
    its insides, past what it says it offers. Found however the module was imported."""
    paths = {module_name(path): path for path in (REPO / "charlm").rglob("*.py")}
    probe = tmp_path / "probe.py"  # a module that reaches in every way looked for: each is found
    probe.write_text("from charlm.corpus import _decode\nfrom charlm import checkpoint as c\nimport charlm.vocab\n"
                     "c._upgrade_v2({})\ncharlm.vocab._x\n", encoding="utf-8")  # fmt: skip
    assert len(private_reaches(probe, set(paths))) == 3, "a reach missed: the test would pass for nothing"
    found = [reach for path in sorted(paths.values()) for reach in private_reaches(path, set(paths))]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


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


def public_functions(path: Path) -> set[str]:
    return {
        node.name
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }


def test_an_options_refusal_and_a_files_error_are_named_apart():
    """fields.cannot_read (the opening of a refusal of an option's value) and files.cannot_read (a file's
    error) shared a name: config.py imports the one by its bare name, and its reader, who meets
    `files.cannot_read` everywhere else, could not tell which it was."""
    options, files = (public_functions(REPO / "charlm" / name) for name in ("fields.py", "files.py"))
    assert "said" in options and "replace_files" in files, (
        "the functions were not found: the test would pass for nothing"
    )
    assert not options & files, f"named alike in fields.py and files.py: {sorted(options & files)}"


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


def listed_files(package: Path) -> set[str]:
    """The files a package's docstring lists, one job a line: `    engine.py      what it does`
    (`page.css, page.js  ...`: two on one line)."""
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
    names = re.findall(r"^ {4}(\S+\.\w+(?:, \S+\.\w+)*) ", docstring, re.MULTILINE)
    return {name for line in names for name in line.split(", ")}


@pytest.mark.parametrize("package", ["serve", "inspection", "export"])
def test_a_packages_list_of_its_modules_names_every_file(package):
    """A package's docstring is where a newcomer learns which file does which job: a module split off
    and left out of it is a job the reader never hears of, and a name left after its file is gone sends
    them looking for nothing."""
    folder = REPO / "charlm" / package
    files = {p.name for p in folder.iterdir() if p.is_file() and p.name != "__init__.py" and p.suffix != ".pyc"}
    assert len(files) > 2, "almost no files found: the test would pass for nothing"
    assert listed_files(folder) == files, (
        f"charlm/{package}/__init__.py lists {sorted(listed_files(folder) - files)} that are not files and "
        f"leaves out {sorted(files - listed_files(folder))}"
    )
