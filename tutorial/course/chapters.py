"""The chapters of the course: where each one's files live, the lesson modules it teaches, and
the exercises carved from them, with the exercises each one builds on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Lesson:
    """A library module a chapter teaches. One with exercises becomes an exercise file."""

    module: str  # "tutorial.reduction"
    file: str | None = None  # its exercise file in the chapter's folder, if it has exercises
    # exercise -> the exercises of this chapter it calls: when one of those fails, the grader
    # says so instead of blaming the exercise that merely calls it
    exercises: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Chapter:
    number: str  # "00"
    slug: str  # folder name under chapters/
    title: str
    lessons: tuple[Lesson, ...]  # every library module the chapter teaches, the exercised ones first

    def folder(self, root: Path) -> Path:
        return Path(root) / "chapters" / self.slug

    @property
    def exercised(self) -> tuple[Lesson, ...]:
        """The lessons that have an exercise file."""
        return tuple(lesson for lesson in self.lessons if lesson.file)

    @property
    def exercises(self) -> dict[str, tuple[str, ...]]:
        """Every exercise of the chapter, with the ones it builds on."""
        return {name: needs for lesson in self.exercised for name, needs in lesson.exercises.items()}

    def exercise_path(self, root: Path, lesson: Lesson) -> Path:
        return self.folder(root) / lesson.file

    def exercise_paths(self, root: Path) -> list[Path]:
        return [self.exercise_path(root, lesson) for lesson in self.exercised]

    def lesson_of(self, exercise: str) -> Lesson:
        return next(lesson for lesson in self.exercised if exercise in lesson.exercises)

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
    Chapter("00", "00_fp8_formats", "FP8 formats", (
        Lesson("tutorial.fp8", "exercise.py", {"round_bits_to_fp8": (), "fp8_to_float32_bits": ()}),
        Lesson("tutorial.fp8_hardware"),
    )),
    Chapter("01", "01_warp_reduction", "Warp-shuffle max reduction", (
        Lesson("tutorial.reduction", "exercise.py",
               {"warp_max": (), "block_max": ("warp_max",), "absmax_kernel": ("block_max",)}),
        Lesson("tutorial.reduction_tiles"),
    )),
    Chapter("02", "02_per_tensor", "Per-tensor quantization, static and dynamic", (
        Lesson("tutorial.quant.per_tensor", "exercise.py", {"pack4": (), "per_tensor_kernel_vec4": ("pack4",)}),
        Lesson("tutorial.quant.common"),
        Lesson("tutorial.quant.encoders"),
        Lesson("tutorial.qtensor"),
        Lesson("tutorial.reference"),
        Lesson("tutorial.accuracy"),
    )),
    Chapter("03", "03_per_channel", "Per-channel quantization", (
        Lesson("tutorial.quant.per_channel", "exercise.py", {"per_row_kernel_vec4": ()}),
    )),
    Chapter("04", "04_fine_grained", "Fine-grained (block) quantization", (
        Lesson("tutorial.quant.blockwise", "exercise.py", {"row_group_kernel": (), "tile_kernel": ()}),
        Lesson("tutorial.quant.interleaved"),
    )),
    Chapter("05", "05_scaled_gemm", "Scaled GEMM: CUDA cores, then tensor cores", (
        Lesson("tutorial.gemm.cuda_core", "exercise.py", {"tiled_kernel": (), "blocked_kernel": ()}),
        Lesson("tutorial.gemm.mma", "exercise_mma.py", {"load_fragment_a": (), "load_fragment_b": ()}),
        Lesson("tutorial.gemm.tensor_core"),
        Lesson("tutorial.gemm.plan"),
        Lesson("tutorial.gemm.tiling"),
        Lesson("tutorial.gemm.operands"),
        Lesson("tutorial.gemm"),
    )),
    Chapter("06", "06_warpgroup_mma", "Hopper's warpgroup MMA, TMA and DeepSeek's promotion", (
        Lesson("tutorial.gemm.wgmma", "exercise.py", {"descriptor": (), "fragment_d": ("descriptor",)}),
        Lesson("tutorial.gemm.warpgroup"),
        Lesson("tutorial.gemm.specialized"),
        Lesson("tutorial.runtime.warpgroup_ptx"),
        Lesson("tutorial.runtime.tma_ptx"),
        Lesson("tutorial.runtime.tensor_map"),
        Lesson("tutorial.runtime.fragment"),
    )),
    # A chapter of measurement, with no exercise: nothing to grade.
    Chapter("07", "07_transformer", "FP8 in a real transformer", (
        Lesson("tutorial.transformer.minilm"),
        Lesson("tutorial.transformer.schemes"),
        Lesson("tutorial.transformer.evaluate"),
        Lesson("tutorial.transformer.kernel_path"),
        Lesson("tutorial.transformer.sample"),
    )),
]


def chapter(key: str) -> Chapter:
    """Look a chapter up by number ("00", "0") or folder name."""
    for ch in CHAPTERS:
        if key in (ch.number, ch.slug) or key.lstrip("0") == ch.number.lstrip("0"):
            return ch
    raise ValueError(f"no chapter {key!r}; chapters: {', '.join(c.number for c in CHAPTERS)}")


def graded_chapter(key: str) -> Chapter:
    """[`chapter`][] for a grader: an error for a chapter that has no exercises."""
    ch = chapter(key)
    if not ch.exercises:
        with_exercises = ", ".join(c.number for c in CHAPTERS if c.exercises)
        raise ValueError(f"chapter {ch.number} has no exercises to grade; chapters with exercises: {with_exercises}")
    return ch


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
