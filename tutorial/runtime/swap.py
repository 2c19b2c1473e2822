"""Loading a learner's exercise file as the library module it was carved from.

The grader runs the graded tests with the environment variable `TUTORIAL_EXERCISE_FILES` set
to `module=path` pairs separated by `;` (for example
`tutorial.reduction=/course/chapters/01_warp_reduction/exercise.py`). When `tutorial` is
imported, [`install_from_environment`][] puts a finder in front of Python's own, and each of
those modules is then loaded from its exercise file instead of the library's. Every part of
the library that imports the module gets the learner's code: `tutorial.absmax` runs the
learner's `absmax_kernel`, and a later chapter's kernel the learner's `block_max`.

`TUTORIAL_LIBRARY_EXERCISES` names exercises (comma separated) to take from the library all
the same: after an exercise file runs, each of those functions is replaced by the library's
own. The grader uses it to tell an exercise that is wrong from one that only calls a wrong
one.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

from .sources import function_source, replace_function

FILES_VAR = "TUTORIAL_EXERCISE_FILES"
LIBRARY_VAR = "TUTORIAL_LIBRARY_EXERCISES"


def encode_files(files: dict[str, Path]) -> str:
    """The value of `TUTORIAL_EXERCISE_FILES` for {module: exercise file}."""
    return ";".join(f"{module}={Path(path).resolve()}" for module, path in files.items())


def decode_files(value: str) -> dict[str, Path]:
    pairs = [item.split("=", 1) for item in value.split(";") if item.strip()]
    return {module.strip(): Path(path) for module, path in pairs}


class _ExerciseLoader(importlib.machinery.SourceFileLoader):
    """Runs the exercise file as the module, with the library's definition of each exercise the
    grader asked for put in the place of the learner's before it runs (so that whatever the
    module builds from them at import, chapter 00's compiled encoders say, is built from the
    library's)."""

    def __init__(self, fullname: str, path: str, from_library: set[str]):
        super().__init__(fullname, path)
        self.from_library = from_library

    def get_code(self, fullname):
        # Always from the source, never from a cached .pyc: the source depends on from_library.
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)

    def get_data(self, path):
        data = super().get_data(path)
        if not self.from_library or path != self.path:
            return data
        source = data.decode()
        library = _library_source(self.name)
        for name in sorted(self.from_library):
            try:
                source = replace_function(source, name, function_source(library, name))
            except ValueError:  # not an exercise of this file
                continue
        return source.encode()


def _library_source(fullname: str) -> str:
    """The text of the library's own module `fullname` (not the exercise file in its place)."""
    package = fullname.rpartition(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(fullname, sys.modules[package].__path__)
    return Path(spec.origin).read_text()


class ExerciseFinder(importlib.abc.MetaPathFinder):
    """Finds the modules named in `files` in their exercise files."""

    def __init__(self, files: dict[str, Path], from_library: set[str]):
        self.files = files
        self.from_library = from_library

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.files:
            return None
        origin = str(self.files[fullname])
        return importlib.util.spec_from_file_location(
            fullname, origin, loader=_ExerciseLoader(fullname, origin, self.from_library))


def install(files: dict[str, Path], from_library=()) -> ExerciseFinder:
    """Load each module of `files` from its exercise file from now on, with the exercises named
    in `from_library` taken from the library. The modules must not be imported yet."""
    loaded = [module for module in files if module in sys.modules]
    if loaded:
        raise RuntimeError(f"{', '.join(loaded)} already imported from the library: exercise files must be put "
                           "in place before a lesson is first imported")
    missing = [str(path) for path in files.values() if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"no such exercise file: {', '.join(missing)}")
    finder = ExerciseFinder({module: Path(path) for module, path in files.items()}, set(from_library))
    sys.meta_path.insert(0, finder)
    return finder


def install_from_environment() -> ExerciseFinder | None:
    """Install the finder for the exercise files named in the environment, if any (once)."""
    files = decode_files(os.environ.get(FILES_VAR, ""))
    if not files or any(isinstance(f, ExerciseFinder) for f in sys.meta_path):
        return None
    return install(files, {name for name in os.environ.get(LIBRARY_VAR, "").split(",") if name})
