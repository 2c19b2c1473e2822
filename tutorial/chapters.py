"""The chapters of the course: where each one's files live, which solution module it teaches,
and the exercises carved from it, with the exercises each one builds on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Chapter:
    number: str  # "00"
    slug: str  # folder name under chapters/
    title: str
    solution_module: str  # the library module whose marked regions become the exercise
    # exercise -> the exercises of this chapter it calls: when one of those fails, the grader
    # says so instead of blaming the exercise that merely calls it
    exercises: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def folder(self, root: Path) -> Path:
        return Path(root) / "chapters" / self.slug

    def exercise_path(self, root: Path) -> Path:
        return self.folder(root) / "exercise.py"

    def needs(self, exercise: str) -> list[str]:
        """Every exercise `exercise` builds on, directly or through another, nearest first."""
        order: list[str] = []
        todo = list(self.exercises.get(exercise, ()))
        while todo:
            name = todo.pop(0)
            if name not in order:
                order.append(name)
                todo += self.exercises.get(name, ())
        return order


CHAPTERS = [
    Chapter("00", "00_fp8_formats", "FP8 formats", "tutorial.fp8",
            {"round_bits_to_fp8": (), "fp8_to_float32_bits": ()}),
    Chapter("01", "01_warp_reduction", "Warp-shuffle max reduction", "tutorial.reduction",
            {"warp_max": (), "block_max": ("warp_max",), "absmax_kernel": ("block_max",)}),
    Chapter("02", "02_per_tensor", "Per-tensor quantization, static and dynamic", "tutorial.per_tensor",
            {"pack4": (), "per_tensor_kernel_vec4": ("pack4",)}),
    Chapter("03", "03_per_channel", "Per-channel quantization", "tutorial.per_channel",
            {"per_row_kernel_vec4": ()}),
    Chapter("04", "04_fine_grained", "Fine-grained (block) quantization", "tutorial.blockwise",
            {"row_group_kernel": (), "tile_kernel": ()}),
    Chapter("05", "05_scaled_gemm", "Shared-memory tiled GEMM with fine-grained FP8 scales", "tutorial.gemm",
            {"tiled_kernel": (), "blocked_kernel": ()}),
]


def chapter(key: str) -> Chapter:
    """Look a chapter up by number ("00", "0") or folder name."""
    for ch in CHAPTERS:
        if key in (ch.number, ch.slug) or key.lstrip("0") == ch.number.lstrip("0"):
            return ch
    raise ValueError(f"no chapter {key!r}; chapters: {', '.join(c.number for c in CHAPTERS)}")


def chapter_of_exercise(name: str) -> Chapter:
    """The chapter whose exercise is called `name`."""
    for ch in CHAPTERS:
        if name in ch.exercises:
            return ch
    known = ", ".join(n for c in CHAPTERS for n in c.exercises)
    raise ValueError(f"no exercise {name!r}; exercises: {known}")


def find_root(start: Path | None = None) -> Path:
    """The course checkout: the nearest folder at or above `start` that holds chapters/ and tests/."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "chapters").is_dir() and (folder / "tests").is_dir():
            return folder
    raise FileNotFoundError(f"no course checkout (a folder with chapters/ and tests/) at or above {here}")
