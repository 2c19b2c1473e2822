"""The box a student's code runs in when a class is graded (`fp8-tutorial autograde`).

One child process per submission (restarted after a case that killed it) runs the harnesses
of a chapter's graded cases beside the student's code and writes their outputs, never a
verdict: the autograder judges them in its own process ([`tutorial.course.autograde`][]).

What every child gets, wherever it runs:

* a fresh folder of its own as its working directory, HOME and Numba cache;
* a scrubbed environment (PATH, LANG, and the few variables Numba needs: nothing of the
  grader's own, such as where its report goes);
* limits: CPU seconds, file size, open files, and, on the simulator, address space; a
  wall-clock limit per case that covers the import of the student's code too, and caps on
  what it prints and on the outputs it sends back (kept by the parent, which kills the
  process group);
* a pipe to send outputs on ([`send`][]): nothing it writes to disk is read back;
* the student edition of the chapter on its import path, in front of the dependencies:
  `import tutorial` finds the stubs, never the instructor's solutions.

Where Linux namespaces can be had (root, or unprivileged user namespaces: [`containment`][]
finds out once), the child also runs

* in its own mount namespace, where every file system is read-only but its own folder, a
  tmpfs of limited size (so it cannot fill the disk or write into another student's files),
  and where the instructor's course, the submissions and the grader's output folder are
  hidden under empty read-only mounts (so it cannot read the solutions by path either);
* without network, and with every capability dropped (it cannot undo the mounts).

Without them ("rlimits" containment), a submission can still write wherever the grading user
can, and read what that user can read: the autograder grades from copies it took before any
child ran, so another student's grade cannot change, and it says so in its summary.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NAMESPACES = "namespaces"
RLIMITS = "rlimits"


@dataclass(frozen=True)
class Limits:
    """What one child may use."""

    case_s: float = 60.0  # CPU seconds for one case (or for importing the student's code)
    wall_factor: float = 10.0  # and wall-clock seconds, case_s times this: a busy machine is slow
    cpu_s: int = 900  # CPU seconds for the whole child
    file_mb: int = 64  # the largest file it may write (its printed output included)
    memory_mb: int = 8192  # address space, on the simulator (a GPU driver maps far more)
    disk_mb: int = 256  # its folder's size, where namespaces are available
    open_files: int = 256
    outputs_mb: int = 256  # all the outputs it sends back


def _rlimits(limits: Limits, simulator: bool):
    """preexec_fn: the limits, and a process group of its own (to kill it whole)."""
    def apply():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb << 20, limits.file_mb << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if simulator:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20, limits.memory_mb << 20))
    return apply


_SETUP = r"""
set -e
work="$1"; box="$2"; disk="$3"; shift 3
# every file system read-only, in this namespace only
for m in $(awk '{print $2}' /proc/self/mounts | grep -v -e '^/proc' -e '^/sys' -e '^/dev'); do
    mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount -t tmpfs -o size=1m,mode=0755 tmpfs /dev/shm 2>/dev/null || true
# its own folder: a small tmpfs holding a copy of what the parent put in work
mount -t tmpfs -o "size=${disk}m,mode=0777" tmpfs "$box"
cp -a "$work/." "$box/"
# hide what it must not read (the parent's work folder among them)
while [ "$1" != "--" ]; do
    mount -t tmpfs -o size=4k,ro tmpfs "$1"; shift
done
shift
cd "$box"
exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- "$@"
"""


def _unshare() -> list[str]:
    """The unshare command for this user (root needs no user namespace)."""
    user = [] if os.geteuid() == 0 else ["-r"]
    return ["unshare", *user, "-m", "-n", "--propagation", "private"]


@functools.cache
def containment() -> str:
    """NAMESPACES if a child can be shut in (read-only file systems but its folder, hidden
    paths, no network, no capabilities): tried once, for real; else RLIMITS."""
    if sys.platform != "linux" or not (shutil.which("unshare") and shutil.which("setpriv")):
        return RLIMITS
    with tempfile.TemporaryDirectory() as tmp:
        work, box, hidden = Path(tmp) / "work", Path(tmp) / "box", Path(tmp) / "hidden"
        for folder in (work, box, hidden):
            folder.mkdir()
        (hidden / "secret").write_text("x")
        (work / "given").write_text("x")
        probe = (f"touch {tmp}/outside 2>/dev/null && exit 3; test -e {hidden}/secret && exit 4; "
                 "test -e given || exit 5; touch inside || exit 6; exit 0")
        try:
            proc = subprocess.run([*_unshare(), "sh", "-c", _SETUP, "setup", str(work), str(box), "1", str(hidden),
                                   "--", "sh", "-c", probe], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return RLIMITS
        return NAMESPACES if proc.returncode == 0 else RLIMITS


def environment(work: Path) -> dict[str, str]:
    """The child's whole environment."""
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TUTORIAL_DEVICE", "CUDA_VISIBLE_DEVICES")}
    return {**keep, "PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "NUMBA_CACHE_DIR": str(work / ".numba"),
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


CHANNEL_VAR = "TUTORIAL_SANDBOX_FD"
THREAD_STACK = 2 << 20  # bytes of stack per thread in the child  # the child's end of the pipe it reports on


@dataclass
class Finished:
    code: int | None  # exit code (negative: the signal); None: killed by the parent
    output: str  # the end of what it printed
    messages: list  # (header dict, payload bytes) in the order the child sent them
    stage: str | None  # the stage it was in when it ended (None: it said it was done)
    reason: str | None = None  # why the parent killed it


def send(header: dict, payload: bytes = b"") -> None:
    """In the child: one message to the parent (a JSON header, then bytes)."""
    import json

    head = json.dumps(header).encode()
    fd = int(os.environ[CHANNEL_VAR])
    os.write(fd, len(head).to_bytes(4, "big") + len(payload).to_bytes(8, "big") + head)
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def _read_messages(fd: int, box: dict, limit: int) -> None:
    """The parent's reader: messages into box["messages"], the arrival time of each stage."""
    import json

    with os.fdopen(fd, "rb") as pipe:
        total = 0
        while True:
            sizes = pipe.read(12)
            if len(sizes) < 12:
                return
            head_size, size = int.from_bytes(sizes[:4], "big"), int.from_bytes(sizes[4:], "big")
            total += head_size + size
            if head_size > 1 << 16 or total > limit:
                box["overflow"] = True
                return
            try:
                header = json.loads(pipe.read(head_size))
            except ValueError:
                box["overflow"] = True
                return
            payload = pipe.read(size)
            if "stage" in header:
                box["stage"], box["since"], box["cpu_since"] = header["stage"], time.monotonic(), None
            box["messages"].append((header, payload))


def _read_output(proc, box: dict, cap: int, why: str, keep: int = 4000) -> None:
    """The parent's reader of what the child prints: keeps the end; past `cap` bytes, kills it
    there and then (the child blocks on a full pipe, so it cannot run ahead meanwhile)."""
    tail, total = b"", 0
    while chunk := proc.stdout.read(1 << 16):
        total += len(chunk)
        tail = (tail + chunk)[-keep:]
        box["output"] = tail
        if total > cap:
            box["reason"] = why
            _kill(proc)
            return


def run(argv: list[str], work: Path, box: Path, limits: Limits, simulator: bool, hide: list[Path],
        total_s: float) -> Finished:
    """Run `argv` on the files in `work`, contained (with namespaces, in a tmpfs at `box` holding
    a copy of them, `work` and `hide` hidden), and collect what it sends ([`send`][]).

    The parent kills it when one stage (a message {"stage": name} starts one) has used more
    than `limits.case_s` seconds of CPU time, or `wall_factor` times that on the clock (a
    learner's endless loop burns CPU; a correct kernel on a machine busy with other work
    mostly waits for it, so CPU time, not the clock, tells them apart); when all stages
    together pass `total_s` (a child that announces stage after stage does not run for ever);
    when it prints more than `limits.file_mb` MB; or when it sends more than
    `limits.outputs_mb` MB of messages."""
    import threading

    home = work
    if containment() == NAMESPACES:
        home = box
        home.mkdir(parents=True, exist_ok=True)
        hidden = []
        for path in sorted({p.resolve() for p in [*hide, work] if p.exists()}, key=lambda p: len(p.parts)):
            if not home.resolve().is_relative_to(path) and not any(path.is_relative_to(h) for h in hidden):
                hidden.append(path)  # (one folder above another hides both)
        hidden = [str(p) for p in hidden]
        argv = [*_unshare(), "sh", "-c", _SETUP, "setup", str(work), str(home), str(limits.disk_mb), *hidden, "--",
                *argv]
    read_end, write_end = os.pipe()
    started = time.monotonic()
    box = {"messages": [], "stage": "starting", "since": time.monotonic(), "cpu_since": None, "output": b""}
    env = {**environment(home), CHANNEL_VAR: str(write_end)}
    proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, pass_fds=(write_end,), preexec_fn=_rlimits(limits, simulator))
    os.close(write_end)
    readers = [threading.Thread(target=_read_messages, args=(read_end, box, limits.outputs_mb << 20), daemon=True),
               threading.Thread(target=_read_output, daemon=True, args=(
                   proc, box, limits.file_mb << 20, f"stopped: it printed more than {limits.file_mb} MB"))]
    for reader in readers:
        reader.start()
    code, reason = None, None
    while code is None:
        try:
            code = proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            cpu = cpu_seconds(proc.pid)
            if box["cpu_since"] is None:
                box["cpu_since"] = cpu
            wall = time.monotonic() - box["since"]
            if cpu - box["cpu_since"] > limits.case_s or wall > limits.case_s * limits.wall_factor \
                    or time.monotonic() - started > total_s:
                reason = f"stopped after {limits.case_s:g} s of CPU time: an endless loop?"
            elif box.get("overflow"):
                reason = f"stopped: its outputs were larger than {limits.outputs_mb} MB, or garbled"
            if reason:
                _kill(proc)
                break
    for reader in readers:
        reader.join(timeout=10)
    reason = reason or box.get("reason")
    stage = None if box["stage"] == "done" else box["stage"]
    return Finished(None if reason else code, box["output"].decode(errors="replace"), box["messages"], stage, reason)


def cpu_seconds(pid: int) -> float:
    """CPU time used by process `pid` so far (Linux; elsewhere 0, and the wall clock decides).
    `unshare`, `sh` and `setpriv` each exec the next, so `pid` is the Python child itself."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def why(finished: Finished, limits: Limits) -> str:
    """What ended a child, in a learner's words."""
    if finished.reason:
        return finished.reason
    if finished.code == -signal.SIGXFSZ:
        return f"stopped: it wrote a file larger than {limits.file_mb} MB"
    if finished.code == -signal.SIGXCPU:
        return f"stopped: it used more than {limits.cpu_s} s of CPU time"
    if finished.code is not None and finished.code < 0:
        return f"the process crashed ({signal.Signals(-finished.code).name})"
    return f"the process exited (exit code {finished.code}) before it finished"




# -- the child's side --------------------------------------------------------------------------

BOOTSTRAP = r'''
# Runs with `python -I -S`: no site, no environment. Puts the student edition, the harnesses
# and the dependencies (never the instructor's package) on the path, then hands over.
import json, os, sys
job = json.load(open(sys.argv[1]))
sys.path[:0] = [os.path.abspath(p) for p in job["path"]]
for site in job["site"]:
    sys.path.append(site)
    for name in sorted(os.listdir(site)):
        if not name.endswith(".pth") or name.startswith("__editable__") or "fp8_tutorial" in name:
            continue
        for line in open(os.path.join(site, name)):
            line = line.rstrip()
            if line.startswith(("import ", "import\t")):
                exec(line)
            elif line and not line.startswith("#") and os.path.isdir(os.path.join(site, line)):
                sys.path.append(os.path.join(site, line))
from tutorial.course.sandbox import child_main
child_main(job)
'''


def import_error(exc: BaseException, files: list[str]) -> dict:
    """Why importing a learner's exercise file failed, and where: {"error", "line", "file"},
    the line and file being the last place in `files` (the exercise files' paths) that the
    traceback passes, or a syntax error's own."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
    if isinstance(exc, SyntaxError):
        line, where = exc.lineno, exc.filename or ""
    else:
        line, where = (frames[-1].lineno, frames[-1].filename) if frames else (None, "")
    return {"error": f"{type(exc).__name__}: {getattr(exc, 'msg', None) or exc}", "line": line, "file": where}


def child_main(job: dict) -> None:
    """In the child: import the student's code as the lesson modules, then run each case's
    harness on its inputs and send the outputs (or the error) back, one case at a time."""
    import importlib
    import io

    files = {module: str(Path(path).resolve()) for module, path in job["files"].items()}
    from ..runtime import swap

    swap.install(files)  # before any lesson module is imported: the student's files are the lessons
    # The simulator runs a thread per CUDA thread: at the default 8 MB of stack each, a block of
    # 1024 threads alone would reserve 8 GB of the address space the child is allowed.
    import threading

    threading.stack_size(THREAD_STACK)
    send({"stage": "import"})
    try:
        import numpy as np

        import tutorial  # noqa: F401  (chooses the GPU or the simulator, as the parent did)
        from .cases import as_outputs, harness
        for module in files:
            importlib.import_module(module)
    except BaseException as exc:  # SystemExit too: the student's module ran
        found = import_error(exc, list(files.values()))
        where = f" (line {found['line']})" if found["line"] else ""
        send({"import_error": found["error"][:2000] + where})
        send({"stage": "done"})
        return
    for case in job["cases"]:
        send({"stage": f"case {case['index']}"})
        try:
            with np.load(case["inputs"], allow_pickle=False) as data:
                inputs = {name: data[name] for name in data.files}
            outputs = as_outputs(harness(case["run"])(**inputs))
            buffer = io.BytesIO()
            np.savez(buffer, **outputs)
            send({"case": case["index"], "status": "ok"}, buffer.getvalue())
        except BaseException as exc:
            send({"case": case["index"], "status": "error", "message": f"{type(exc).__name__}: {exc}"[:2000]})
    send({"stage": "done"})


__all__ = ["Limits", "Finished", "containment", "environment", "run", "send", "why", "child_main", "cpu_seconds",
           "import_error",
           "BOOTSTRAP",
           "NAMESPACES", "RLIMITS", "CHANNEL_VAR"]
