"""A project as it was at a git revision, for `doit diff base=<revision>`."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError
from ..facts import layout


@contextmanager
def project_at(root: Path, revision: str) -> Iterator[Path]:
    """The config-relevant part of the project as of a git revision, in a temporary folder."""
    parts = [p for p in (layout.CONF_DIR, layout.RECIPES_DIR, layout.TEMPLATES_DIR, layout.DATA_DIR)
             if (Path(root) / p).exists()]
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", revision, *parts], cwd=root,
                                 capture_output=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        detail = err.stderr.decode().strip() if isinstance(err, subprocess.CalledProcessError) else str(err)
        raise ConfigError(f"cannot read revision {revision!r} with git: {detail}") from None
    with tempfile.TemporaryDirectory(prefix="llmbuild-rev-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="tar")
        yield Path(tmp)
