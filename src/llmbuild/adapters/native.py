"""llama.cpp work that runs inside this process (llama-cpp-python: a GGUF's vocabulary and metadata,
tokenizing, quantizing) runs in a forked copy of the process, so that a crash in the C++ library (an
exception it does not catch, a failed GGML_ASSERT, a segfault) ends that copy only: the build gets
one error naming the signal and llama.cpp's last words instead of dying with no message and leaving
a half-written folder behind.

Only work that runs no compute graph goes here: ggml computes with OpenMP, and GNU OpenMP in a
forked child of a process that has used it waits forever for threads the child does not have.
Generation (the smoke test) and evaluation run in processes of their own instead.

The copy shares what the process had (its terminal, its logs); what the work returns or raises comes
back through a pipe, and what it printed on stderr is passed on to this process's stderr.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import sys
import tempfile
import traceback
from typing import Callable, Iterable, TextIO, TypeVar

from ..errors import ToolError
from .process import killed_by

T = TypeVar("T")

# what llama.cpp and the C++ runtime print as they die: `terminate called after throwing an instance of
# 'std::out_of_range'` / `  what():  unordered_map::at`, `GGML_ASSERT(...) failed`, `error: ...`
_LAST_WORDS = ("what():", "GGML_ASSERT", "terminate called", "error", "Error")


def run_contained(work: Callable[[], T], *, what: str, streams: Iterable[TextIO] = ()) -> T:
    """`work()` in a forked copy of this process: its result, or the exception it raised. A copy that
    dies of a signal raises ToolError naming `what` it was doing. `streams`: files the work writes to
    (a terminal), flushed before the copy ends."""
    streams = (sys.stdout, sys.stderr, *streams)
    _flush(streams)
    read, write = os.pipe()
    with tempfile.TemporaryFile() as stderr:
        pid = os.fork()
        if pid == 0:   # the copy: never returns into the caller's code
            os.close(read)
            os.dup2(stderr.fileno(), 2)
            _child(work, write, streams)
        os.close(write)
        try:
            with os.fdopen(read, "rb") as pipe:
                payload = pipe.read()
            _, status = os.waitpid(pid, 0)
        except BaseException:   # Ctrl-C (the copy got it too) or an error here: the copy does not outlive us
            _end(pid)
            raise
        stderr.seek(0)
        said = stderr.read().decode("utf-8", errors="replace")
    if said:
        sys.stderr.write(said)   # the library's messages, where this process's own go (a stage's log)
        sys.stderr.flush()
    if payload:
        outcome, value = pickle.loads(payload)
        if outcome == "error":
            raise value
        return value
    raise ToolError(_death(status, what, said))


def _child(work: Callable[[], T], write: int, streams: tuple[TextIO, ...]) -> None:
    code = 0
    os.environ["GGML_NO_BACKTRACE"] = "1"   # ggml would attach gdb to print a backtrace as it aborts
    faulthandler.disable()   # the parent reports the copy's crash; Python's dump of it says nothing more
    try:
        try:
            payload = pickle.dumps(("ok", work()))
        except BaseException as err:   # noqa: BLE001 - every outcome goes back to the parent
            payload = pickle.dumps(("error", _portable(err)))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
    except BaseException:   # noqa: BLE001 - a result that cannot be sent: the parent reports the exit
        code = 70
    finally:
        _flush(streams)
        os._exit(code)


def _portable(err: BaseException) -> BaseException:
    """The exception itself where it survives pickling; else a RuntimeError with its text and traceback."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:   # noqa: BLE001
        text = "".join(traceback.format_exception(err)).rstrip()
        return RuntimeError(f"{type(err).__name__}: {err}\n{text}")


def _death(status: int, what: str, said: str) -> str:
    if os.WIFSIGNALED(status):
        how = killed_by(os.WTERMSIG(status))
    else:
        how = f"ended with exit status {os.WEXITSTATUS(status)} and no result"
    lines = [line.strip() for line in said.splitlines()[-40:]]
    cause = " ".join([line for line in lines if line.startswith(_LAST_WORDS) or "GGML_ASSERT" in line][-2:])[:300]
    return f"llama.cpp {how} while {what}" + (f": {cause}" if cause else "")


def _end(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _flush(streams: Iterable[TextIO]) -> None:
    for stream in streams:
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
