"""Test set-up: `tutorial` is imported first, so it chooses GPU or simulator before numba.cuda loads."""

import tutorial  # noqa: F401  (must precede any numba.cuda import)


def pytest_report_header(config):
    return f"tutorial device: {tutorial.SELECTION.mode} ({tutorial.SELECTION.reason})"
