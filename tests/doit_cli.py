"""The one way tests run llmbuild's command line.

`doit(...)` runs `doit <command> <args>` as a user types it: through doit's own entry point
(`DoitMain`, which reads pyproject.toml and loads llmbuild's commands and task loader), in this
process by default, so torch, transformers and LLaMA-Factory are imported once per test session
rather than once per build; the tools llmbuild starts (LLaMA-Factory, llama.cpp's converter, the eval
workers) are processes of their own either way. `process=True` runs `python -m doit` in a process of
its own instead: for what only a real process shows (signals, two builders at once, a server, the
environment a user's shell gives).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the tiny model's build, small enough for seconds per stage (tests/tiny_model.py)
# (jobs.train_at_once=2: the tests that share a store may train at once; a key covers no jobs setting)
TINY = ("model=local", "model.name=Tiny-Llama", "dataset.max_samples=8", "train.max_steps=2", "quant.imatrix=none",
        "train.logging_steps=1", "train.per_device_train_batch_size=2", "smoke.max_tokens=8", "eval.enabled=false",
        "jobs.train_at_once=2")


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def ran(self) -> list[str]:
        """The slots that ran, in order: `train`, or `train@sft` for a pipeline's earlier stage."""
        return [m[1] or m[0] for m in re.findall(r"^\.  (\w+):\S+(?: .*?\[(\w+@[\w-]+)\])?.*$", self.stdout, re.M)]

    @property
    def out(self) -> Path:
        """The last variant's output folder, from the summary `doit build` prints at the end."""
        folder = re.findall(r"^\S+: outputs in (.+)/$", self.stdout, flags=re.M)[-1]
        return (ROOT / folder).resolve()

    def tail(self, n: int = 4000) -> str:
        return self.stdout[-n:] + "\n" + self.stderr[-n:]


def argv(command: str, *args: str, options: tuple[str, ...] = (), store: Path | None = None,
         db: Path | None = None) -> list[str]:
    """doit's own options first (as README says: `doit build -n 2 ...`), then the store and the overrides."""
    return [command, *options, *(["--db-file", str(db)] if db else []), *([f"store={store}"] if store else []),
            *args]


# the commands that open doit's database (and so take --db-file)
WITH_DB = {"build", "sweep", "serve", "report", "preview", "plan", "list", "info", "clean", "forget", "run"}


# the commands whose -n is a dry run, not parallel tasks
DRY_RUN_N = {"clean", "gc"}


def _db(command: str, store: Path | None, db: Path | None) -> Path | None:
    """doit's database: `db`, else one next to the store, so that tests never share the project's."""
    if command not in WITH_DB:
        return None
    return db or (Path(store).parent / f"{Path(store).name}.doit.db" if store is not None else None)


def doit(command: str, *args: str, options: tuple[str, ...] = (), store: Path | None = None, db: Path | None = None,
         cwd: Path = ROOT, ok: bool | None = True, process: bool = False, env: dict[str, str] | None = None) -> Done:
    """Run `doit command [options] args` with cwd `cwd`; `options`: doit's own (`("-n", "2")`); `ok`: assert
    it succeeded (True) or failed (False)."""
    line = argv(command, *args, options=options, store=store, db=_db(command, store, db))
    if process:
        done = subprocess.run([sys.executable, "-m", "doit", *line], cwd=cwd, capture_output=True, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        result = Done(done.returncode, done.stdout, done.stderr)
    else:
        assert not env, "an environment of its own needs process=True"
        # doit's -n (parallel tasks) forks this process, which holds torch's threads: a fork can deadlock
        # on their locks (`clean -n` and `gc -n` are dry runs)
        assert command in DRY_RUN_N or "-n" not in options, "doit -n needs process=True"
        result = _in_process(line, cwd)
    if ok is not None:
        assert (result.returncode == 0) == ok, result.tail()
    return result


def popen(command: str, *args: str, store: Path | None = None, db: Path | None = None, cwd: Path = ROOT,
          env: dict[str, str] | None = None, **popen_args) -> subprocess.Popen:
    """`doit command args` started in a process of its own, its output in `.stdout` (text);
    `popen_args`: more of subprocess.Popen's (start_new_session=True: a process group of its own)."""
    return subprocess.Popen([sys.executable, "-m", "doit", *argv(command, *args, store=store,
                                                                 db=_db(command, store, db))], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, **popen_args)


def _in_process(line: list[str], cwd: Path) -> Done:
    """doit's entry point in this process, its file descriptors 1 and 2 caught in files (stages
    write to them below Python: the tools' and llama.cpp's own output)."""
    from doit import cmd_run
    from doit.doit_cmd import DoitMain

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, _cwd(cwd):
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        old_streams = sys.stdout, sys.stderr
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        default_out = cmd_run.opt_outfile["default"]   # sys.stdout as doit was imported
        cmd_run.opt_outfile["default"] = sys.stdout
        sys.modules.pop("dodo", None)   # doit imports the project's dodo.py by name: this project's, not the last
        search_path = list(sys.path)
        try:
            code = DoitMain().run(line) or 0   # as sys.exit() makes it: None is success
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            cmd_run.opt_outfile["default"] = default_out
            sys.path[:] = search_path
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
                stream.close()
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        out.seek(0)
        err.seek(0)
        return Done(code, out.read(), err.read())


@contextlib.contextmanager
def _cwd(folder: Path):
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
