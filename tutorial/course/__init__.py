"""The course around the lessons: the `fp8-tutorial` command, the chapters and their exercise
files, the grader, the demo. The top layer: it may use everything below, nothing uses it."""
