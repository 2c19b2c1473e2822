"""The layer every lesson stands on: where kernels run (GPU or simulator), what the simulator
lacks (warp operations), Numba extensions (bit casts, wide loads, inline PTX), and the launch
helpers every chapter shares. Nothing here knows about FP8 or a chapter."""
