"""The chapters of the course: where each one's files live and which solution module it teaches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Chapter:
    number: str  # "00"
    slug: str  # folder name under chapters/
    title: str
    solution_module: str  # the library module whose marked regions become the exercise

    def folder(self, root: Path) -> Path:
        return Path(root) / "chapters" / self.slug

    def exercise_path(self, root: Path) -> Path:
        return self.folder(root) / "exercise.py"


CHAPTERS = [
    Chapter("00", "00_fp8_formats", "FP8 formats", "tutorial.fp8"),
    Chapter("01", "01_warp_reduction", "Warp-shuffle max reduction", "tutorial.reduction"),
    Chapter("02", "02_per_tensor", "Per-tensor quantization, static and dynamic", "tutorial.per_tensor"),
    Chapter("03", "03_per_channel", "Per-channel quantization", "tutorial.per_channel"),
    Chapter("04", "04_fine_grained", "Fine-grained (block) quantization", "tutorial.blockwise"),
    Chapter("05", "05_scaled_gemm", "Shared-memory tiled GEMM with fine-grained FP8 scales", "tutorial.gemm"),
]


def chapter(key: str) -> Chapter:
    """Look a chapter up by number ("00", "0") or folder name."""
    for ch in CHAPTERS:
        if key in (ch.number, ch.slug) or key.lstrip("0") == ch.number.lstrip("0"):
            return ch
    raise ValueError(f"no chapter {key!r}; chapters: {', '.join(c.number for c in CHAPTERS)}")


def find_root(start: Path | None = None) -> Path:
    """The course checkout: the nearest folder at or above `start` that holds chapters/ and tests/."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "chapters").is_dir() and (folder / "tests").is_dir():
            return folder
    raise FileNotFoundError(f"no course checkout (a folder with chapters/ and tests/) at or above {here}")
