"""`python -m tutorial ...` is the same as the `fp8-tutorial` command."""

from .course.cli import main

raise SystemExit(main())
