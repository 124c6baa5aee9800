"""How to type the running ``corral`` command again, for the hints it prints."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

__all__ = ["command", "quote"]


def quote(text: str) -> str:
    """*text* as one word of a shell command line."""
    return subprocess.list2cmdline([text]) if os.name == "nt" else shlex.quote(text)


def _short(path: str) -> str:
    # The path relative to the working directory when that is shorter.
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # on another drive (Windows)
        return absolute
    if os.sep not in relative and (os.altsep is None or os.altsep not in relative):
        relative = os.path.join(os.curdir, relative)  # not looked up on PATH
    return relative if len(relative) < len(absolute) else absolute


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def command() -> str:
    """The ``corral`` command as typed from the working directory, for hints.

    ``corral`` when that is on ``PATH`` and is the script running now; the
    path of the running script when another one, or none, is on ``PATH``
    (a virtual environment that is not activated: ``.venv/bin/corral``);
    ``<python> -m corral`` otherwise, naming the running interpreter as
    ``python3`` or ``python`` when ``PATH`` finds that very one.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    if os.path.splitext(name)[0] == "corral" and os.path.isfile(argv0):
        # A console script: its own shebang names the right interpreter, so a
        # link to it on PATH runs the same corral.
        found = shutil.which("corral")
        if found is not None and _same_file(found, argv0):
            return "corral"
        return quote(_short(argv0))
    python = sys.executable or "python3"
    for candidate in ("python3", "python"):
        found = shutil.which(candidate)
        # The very path, not the file it links to: a virtual environment's
        # python links to the system's, which lacks the environment's packages.
        if found is not None and os.path.abspath(found) == os.path.abspath(python):
            return f"{candidate} -m corral"
    return f"{quote(_short(python))} -m corral"
