"""numba-fp8-tutorial: FP8 quantization for GPU matrix work, built kernel by kernel in Numba CUDA.

Importing this package first chooses where kernels run (see [`tutorial.device`][tutorial.device]): the
GPU when there is one, else Numba's CUDA simulator, which it teaches warp shuffles.
"""

from .device import MODE, ON_SIMULATOR, SELECTION  # noqa: F401  (must run before numba.cuda)
from . import fp8  # noqa: E402
from .reduction import absmax, absmax_blocks, absmax_rows, block_max, warp_max  # noqa: E402
from .qtensor import QTensor  # noqa: E402
from .per_tensor import calibrate, quantize_per_tensor  # noqa: E402
from .per_channel import quantize_per_channel  # noqa: E402
from .blockwise import quantize_blockwise, quantize_groups_interleaved, split_interleaved  # noqa: E402
from .gemm import matmul_float32, scaled_matmul  # noqa: E402

__version__ = "0.1.0"
__all__ = ["MODE", "ON_SIMULATOR", "SELECTION", "fp8", "absmax", "absmax_rows", "absmax_blocks",
           "warp_max", "block_max", "QTensor", "quantize_per_tensor", "quantize_per_channel",
           "calibrate", "quantize_blockwise", "quantize_groups_interleaved", "split_interleaved",
           "scaled_matmul", "matmul_float32", "__version__"]
