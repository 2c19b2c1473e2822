"""Measuring the lessons' kernels on a GPU and drawing what was measured: CUDA-event timing
with byte and FLOP accounting (`timing`), figures and tables (`plotting`), one benchmark
sweep per chapter (`sweeps`), and the exhaustive FP8 check (`exhaustive`)."""
