"""The shell commands a README shows, and a scratch checkout to run them in as written.

A command in a user's guide that fails is worse than none: the user trusts it. The README test
collects every command (fenced ``bash`` blocks, and inline code that starts with a command
word), so that a new or changed command cannot go untested.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

#: inline code spans starting with one of these are commands (``-R <rule>`` or ``data.ct_dir`` are not)
COMMAND_WORDS = (
    "snakemake ",
    ".venv/bin/",
    ". .venv/bin/activate",
    "tensorboard ",
    "python ",
    "python3 ",
    "sudo ",
)

#: the parts of the repository a user's checkout holds, linked into the scratch checkout
CHECKOUT_ENTRIES = (
    "Snakefile",
    "rules",
    "workflow_scripts",
    "medcyclegan",
    "config",
    "profiles",
    "report",
    "envs",
    "benchmarks",
    "docs",
    "tests",
    "pyproject.toml",
    "README.md",
)

_FENCE = re.compile(r"^```(\w*)\s*$")
_INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _block_commands(lines: list[str]) -> list[str]:
    commands, pending = [], ""
    for raw in lines:
        line = strip_comment(raw)
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        command = (pending + line.strip()).strip()
        pending = ""
        if command:
            commands.append(command)
    return commands


def _inline_commands(prose: str) -> list[str]:
    spans = (" ".join(m.split()) for m in _INLINE.findall(prose))
    return [span for span in spans if span.startswith(COMMAND_WORDS)]


def readme_commands(text: str) -> list[str]:
    """Every command of ``text``, in order, once: the lines of fenced bash/sh/shell blocks
    (continuation lines joined, comments dropped) and inline code starting with a command word."""
    commands: list[str] = []
    block: list[str] | None = None  # the lines of the open fenced block
    shell = False  # whether the open block is a shell block
    prose: list[str] = []  # text between blocks (inline code may wrap onto the next line)
    for line in text.splitlines() + ["```", "```"]:  # two closing fences flush the last prose
        fence = _FENCE.match(line.strip())
        if fence and block is None:
            commands += _inline_commands("\n".join(prose))
            prose, block, shell = [], [], fence[1] in ("bash", "sh", "shell")
        elif fence:
            commands += _block_commands(block) if shell else []
            block = None
        elif block is not None:
            block.append(line)
        else:
            prose.append(line)
    return list(dict.fromkeys(commands))


def make_checkout(root: Path, workdir: Path) -> Path:
    """A scratch checkout in ``workdir``: the repository's files linked in, ``.venv`` linked to the
    Python running this, and no ``config.yaml`` (the caller writes one) or results."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in CHECKOUT_ENTRIES:
        (workdir / name).symlink_to(root / name)
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    return workdir


def activated_env(workdir: Path) -> dict[str, str]:
    """The environment of a shell in which ``. .venv/bin/activate`` was run (``snakemake`` on PATH)."""
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(workdir / ".venv")
    env["PATH"] = f"{workdir / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env
