"""The GPU results the course quotes are committed, and say what they claim."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_exhaustive_fp8_check_covered_all_patterns_with_no_mismatch():
    files = sorted(RESULTS.glob("*/fp8_exhaustive.json"))
    assert files, "no recorded run of `fp8-tutorial verify-fp8`"
    for path in files:
        record = json.loads(path.read_text())
        assert record["patterns"] == 2**32
        assert record["hardware_encoder"] is True, path
        assert len(record["mismatches"]) == 6 and not any(record["mismatches"].values()), path
        assert record["device"]["mode"] == "gpu" and record["device"]["gpu"] and record["date"]
