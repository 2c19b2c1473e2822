"""The public names each chapter promises are importable from the top-level package."""

import tutorial

PROMISED = ["QTensor", "absmax", "absmax_rows", "absmax_blocks", "warp_max", "block_max",  # 01
            "quantize_per_tensor", "calibrate", "quantize_per_channel",  # 02-03
            "quantize_blockwise", "quantize_groups_interleaved", "split_interleaved",  # 04
            "scaled_matmul", "matmul_float32"]  # 05


def test_every_promised_name_is_exported_and_callable():
    missing = [name for name in PROMISED if name not in tutorial.__all__ or not hasattr(tutorial, name)]
    assert missing == []
    assert all(callable(getattr(tutorial, name)) for name in PROMISED)
