"""Python source, function by function: take a top-level function's definition out of a
module's text, or put another in its place. The grader uses it to hand a learner's exercise
file the library's version of some exercises, and the notebooks to put a learner's function
into its lesson module."""

from __future__ import annotations

import ast
import textwrap


def function_source(source: str, name: str) -> str:
    """The top-level function `name` of module `source`, decorators included."""
    lines = source.splitlines(keepends=True)
    first, last = _function_lines(source, name)
    return "".join(lines[first:last])


def replace_function(source: str, name: str, new: str) -> str:
    """Module `source` with its top-level function `name` (decorators included) replaced by the
    function definition `new`."""
    lines = source.splitlines(keepends=True)
    first, last = _function_lines(source, name)
    return "".join(lines[:first]) + textwrap.dedent(new).rstrip("\n") + "\n" + "".join(lines[last:])


def _function_lines(source: str, name: str) -> tuple[int, int]:
    """The 0-based line range of top-level function `name`: from its first decorator to its
    last line, indented comments after its last statement included (an END SOLUTION marker)."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            lines = source.splitlines()
            last = node.end_lineno
            while last < len(lines) and lines[last].startswith((" ", "\t")) and lines[last].strip().startswith("#"):
                last += 1
            return min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1, last
    raise ValueError(f"no top-level function {name!r} in the module")
