"""Test set-up: `tutorial` is imported first, so it chooses GPU or simulator before numba.cuda loads."""

import warnings

import tutorial  # noqa: F401  (must precede any numba.cuda import)

try:  # small test arrays on a GPU are expected to be slow to copy: not worth a warning each
    from numba.core.errors import NumbaPerformanceWarning

    warnings.simplefilter("ignore", NumbaPerformanceWarning)
except ImportError:  # pragma: no cover
    pass


def pytest_report_header(config):
    return f"tutorial device: {tutorial.SELECTION.mode} ({tutorial.SELECTION.reason})"
