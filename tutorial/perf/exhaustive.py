"""Exhaustive check of the FP8 encoders: every one of the 2^32 float32 bit patterns.

On a GPU, a kernel turns each index into a float32 bit pattern and encodes it with the
software encoders ([`tutorial.fp8.encode_e4m3`][tutorial.fp8.encode_e4m3] / `encode_e5m2`)
and, on compute capability >= 8.9, the hardware conversion; the host compares both with
ml_dtypes (after clipping to +-max, since ml_dtypes does not saturate, and with every NaN
input expected as the canonical code 0x7f, since ml_dtypes keeps NaN signs and uses 0x7e for
E5M2). Mismatch counts must all be 0.

Run it with `fp8-tutorial verify-fp8` (GPU only: the simulator would need weeks).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import cuda

from .. import fp8, fp8_hardware
from ..runtime.bitcast import bits_float32
from ..runtime.device import ON_SIMULATOR
from ..runtime.report import device_report


def _codes_kernel(encode_e4m3, encode_e5m2):
    """A kernel that encodes the float32 patterns base .. base + size - 1 with two encoders."""

    @cuda.jit
    def kernel(base, e4m3, e5m2):
        i = cuda.grid(1)
        if i < e4m3.size:
            x = bits_float32(base + i)
            e4m3[i] = encode_e4m3(x)
            e5m2[i] = encode_e5m2(x)

    return kernel


def _reference(base: int, n: int, fmt: fp8.Format) -> np.ndarray:
    x = (np.arange(n, dtype=np.uint64) + base).astype(np.uint32).view(np.float32)
    with np.errstate(invalid="ignore"):
        codes = np.clip(x, -fmt.max, fmt.max).astype(fmt.ml_dtype).view(np.uint8)
    return np.where(np.isnan(x), np.uint8(fmt.nan_code), codes)


def _mismatches(got: np.ndarray, want: np.ndarray, base: int, examples: list) -> int:
    bad = np.flatnonzero(got != want)
    for i in bad[: max(0, 5 - len(examples))]:
        examples.append({"bits": f"{base + int(i):#010x}", "got": int(got[i]), "want": int(want[i])})
    return int(bad.size)


def exhaustive_fp8_check(chunk_log2: int = 26, progress=print) -> dict:
    """Compare software encoder, hardware encoder and ml_dtypes on all 2^32 float32 patterns."""
    if ON_SIMULATOR:
        raise RuntimeError("verify-fp8 needs a GPU: the simulator runs one Python thread per element")
    hardware = fp8_hardware.hardware_fp8_available()
    software_codes = _codes_kernel(fp8.encode_e4m3, fp8.encode_e5m2)
    hardware_codes = _codes_kernel(fp8_hardware.encode_e4m3_hw, fp8_hardware.encode_e5m2_hw)
    n = 1 << chunk_log2
    buffers = [cuda.device_array(n, np.uint8) for _ in range(4)]
    counts = {f"{enc}_vs_{ref}_{fmt.name}": 0 for fmt in fp8.FORMATS.values()
              for enc, ref in [("software", "ml_dtypes"), ("hardware", "ml_dtypes"), ("hardware", "software")]
              if enc == "software" or hardware}
    examples: dict[str, list] = {key: [] for key in counts}
    start = time.time()
    threads, blocks = 256, n // 256
    with ThreadPoolExecutor(max_workers=8) as pool:
        for base in range(0, 1 << 32, n):
            refs = [pool.submit(_reference, base, n, fmt) for fmt in (fp8.E4M3, fp8.E5M2)]
            software_codes[blocks, threads](base, buffers[0], buffers[1])
            sw = [buffers[0].copy_to_host(), buffers[1].copy_to_host()]
            if hardware:
                hardware_codes[blocks, threads](base, buffers[2], buffers[3])
                hw = [buffers[2].copy_to_host(), buffers[3].copy_to_host()]
            for k, fmt in enumerate((fp8.E4M3, fp8.E5M2)):
                ref = refs[k].result()
                key = f"software_vs_ml_dtypes_{fmt.name}"
                counts[key] += _mismatches(sw[k], ref, base, examples[key])
                if hardware:
                    for other, against in [("ml_dtypes", ref), ("software", sw[k])]:
                        key = f"hardware_vs_{other}_{fmt.name}"
                        counts[key] += _mismatches(hw[k], against, base, examples[key])
            done = (base + n) / 2**32
            progress(f"  {done:6.1%} of 2^32 patterns, {time.time() - start:.0f} s")
    return {"patterns": 1 << 32, "hardware_encoder": hardware, "mismatches": counts,
            "first_mismatches": {k: v for k, v in examples.items() if v},
            "seconds": round(time.time() - start, 1)}


def main(out_path: str | None = None) -> int:

    result = {"check": "fp8 encoders on all 2^32 float32 bit patterns",
              "date": time.strftime("%Y-%m-%d"), "device": device_report()}
    result.update(exhaustive_fp8_check())
    text = json.dumps(result, indent=2)
    print(text)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text + "\n")
    return 0 if not any(result["mismatches"].values()) else 1
