"""Graded cases: every graded test split where trust splits.

A graded test has three parts, and only one of them needs the learner's code:

* `make(rng)` draws the inputs: a dict of numpy arrays (trusted);
* `run`, named `"harness_chNN:function"`, calls the learner's code on those inputs and
  returns its outputs, an array or a dict of arrays: the *harness*, in `tests/harness_chNN.py`,
  the only part that runs beside the learner's code;
* `judge(inputs, outputs)` raises AssertionError saying what is wrong (trusted: it sees data
  only, and holds the reference).

Under pytest (`fp8-tutorial grade`, the notebooks' `check`, CI) the three run one after
the other in the test process, so a learner's grader and the library's tests are the same
tests. The class autograder (`fp8-tutorial autograde`) runs `make` and `judge` in its own
process, and only the harness in a sandboxed child beside the submission: the child returns
outputs, never a verdict, and it never holds a reference to copy from.

`make` draws from `np.random.default_rng(case.seed)`, or, when grading a class, from a
generator seeded with the case's seed and the run's, so each grading run draws new inputs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

RESULT = "result"  # the name of a harness's output when it returns one array


@dataclass(frozen=True)
class Case:
    """One graded test: what it shows, how its inputs are drawn, which harness runs the
    learner's code on them, and how its outputs are judged."""

    exercise: str  # the function the learner writes
    shows: str  # what the input is meant to show, in the learner's words
    make: Callable[[np.random.Generator], dict]
    run: str  # "harness_chNN:function"
    judge: Callable[[dict, dict], None]
    seed: int = 0
    weight: float = 1.0  # its share of the exercise's points, against the exercise's other cases
    marks: tuple = field(default=())

    def __post_init__(self):
        module, _, function = self.run.partition(":")
        if not module.startswith("harness_") or not function:
            raise ValueError(f"Case {self.shows!r}: run must name 'harness_chNN:function', got {self.run!r}")
        if not self.weight > 0:
            raise ValueError(f"Case {self.shows!r}: weight must be positive, got {self.weight!r}")

    @property
    def id(self) -> str:
        return f"{self.exercise}: {self.shows}"

    def inputs(self, run_seed: int | None = None) -> dict[str, np.ndarray]:
        """The inputs (arrays), drawn for this grading run (`run_seed`; None: the case's own
        seed only, the same every time)."""
        seed = self.seed if run_seed is None else [self.seed, run_seed]
        drawn = self.make(np.random.default_rng(seed))
        return {name: np.asarray(value) for name, value in drawn.items()}


def harness(run: str):
    """The harness function named `run` ("harness_chNN:function")."""
    module, _, function = run.partition(":")
    return getattr(importlib.import_module(module), function)


def as_outputs(value) -> dict[str, np.ndarray]:
    """A harness's return value as named arrays (plain numpy: no objects, no device arrays)."""
    if not isinstance(value, dict):
        value = {RESULT: value}
    outputs = {}
    for name, array in value.items():
        if hasattr(array, "copy_to_host"):
            array = array.copy_to_host()
        array = np.asarray(array)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"output {name!r}: an array of numbers, not {array.dtype}")
        outputs[str(name)] = array
    return outputs


def check(case: Case, run_seed: int | None = None) -> None:
    """Run a case in this process: draw, run the harness, judge."""
    inputs = case.inputs(run_seed)
    outputs = as_outputs(harness(case.run)(**{k: v.copy() for k, v in inputs.items()}))
    case.judge(inputs, outputs)


def output(outputs: dict, name: str = RESULT) -> np.ndarray:
    """A judge's view of one output: there, or an AssertionError saying it is missing."""
    if name not in outputs:
        raise AssertionError(f"the harness returned no output {name!r}")
    return outputs[name]


def params(cases: list[Case]) -> list:
    """The cases as pytest parameters, each marked graded for its exercise (the test file
    carries the chapter's mark, and `hidden` where its cases are hidden)."""
    import pytest

    ids = [case.id for case in cases]
    repeated = {i for i in ids if ids.count(i) > 1}
    if repeated:
        raise ValueError(f"two cases are called {sorted(repeated)[0]!r}")
    return [pytest.param(case, id=case.id, marks=[pytest.mark.graded(case.exercise), *case.marks])
            for case in cases]


__all__ = ["Case", "RESULT", "harness", "as_outputs", "check", "output", "params"]
