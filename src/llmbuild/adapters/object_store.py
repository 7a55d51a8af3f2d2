"""A folder of objects at an fsspec URL (`s3://bucket/prefix`, `file:///shared/cache`, any fsspec
protocol whose package is installed): read, fetch and send files by relative name, and create one
object only if it does not exist yet (the first writer wins: S3's conditional put `If-None-Match: *`,
a hard link on a local or mounted filesystem).

Credentials come from the environment or the tool's standard configuration only (for S3: AWS_* or
~/.aws, and AWS_ENDPOINT_URL for an S3-compatible server): a URL or option that carries one is
refused, so no credential reaches a config, a key, a manifest or a log. Every failure to reach the
objects (no network, no such bucket, a refused credential) is one Unreachable error naming the URL."""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from ..errors import ToolError
from ..facts.secrets import credential_in_url

# S3: fail fast when the server cannot be reached (botocore waits 60 s and retries 4 times by default)
_S3_CONFIG = {"connect_timeout": 5, "read_timeout": 120, "retries": {"max_attempts": 2, "mode": "standard"}}


class Unreachable(ToolError):
    """The objects cannot be read or written: network, bucket, credentials."""


class ObjectStore:
    def __init__(self, url: str, options: dict[str, Any] | None = None):
        import fsspec

        self.url = url.rstrip("/")
        options = dict(options or {})
        carried = credential_in_url(url, options)
        if carried:   # config validation refuses these first; a direct caller gets the same rule
            raise Unreachable(f"{_shown(url)}: {carried}: credentials come from the environment only")
        self.protocol = urlsplit(url).scheme or "file"
        if self.protocol == "s3":
            options.setdefault("config_kwargs", _S3_CONFIG)
        if self.protocol == "file":
            options.setdefault("auto_mkdir", True)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **options)
        except (ImportError, ValueError, TypeError) as err:
            raise Unreachable(f"{self.url}: {_reason(err)}") from None
        self._checked = False

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def check(self) -> None:
        """Reach the objects once (an S3 bucket must exist; a local folder is made)."""
        if self._checked:
            return
        with self._translated("cannot be reached"):
            if self.protocol == "s3":
                bucket = self.root.split("/", 1)[0]
                try:
                    self.fs.call_s3("head_bucket", Bucket=bucket)
                except FileNotFoundError:
                    raise Unreachable(f"{self.url} cannot be reached: the server has no bucket '{bucket}': "
                                      f"create the bucket first") from None
            elif self.protocol == "file":
                os.makedirs(self.root, exist_ok=True)
            else:
                self.fs.exists(self.root)
        self._checked = True

    def read(self, name: str) -> bytes | None:
        """The object's bytes; None when there is no such object."""
        self.check()
        with self._translated(f"cannot read {name}"):
            try:
                return self.fs.cat_file(self._path(name))
            except FileNotFoundError:
                return None

    def get(self, name: str, local: Path) -> None:
        self.check()
        with self._translated(f"cannot fetch {name}"):
            self.fs.get_file(self._path(name), str(local))

    def put(self, local: Path, name: str) -> None:
        self.check()
        with self._translated(f"cannot send {name}"):
            self.fs.put_file(str(local), self._path(name))

    def create(self, name: str, data: bytes) -> bool:
        """Write the object unless it exists: True if this call wrote it, False if another writer had."""
        self.check()
        with self._translated(f"cannot write {name}"):
            if self.protocol == "file":
                return _link_new(Path(self._path(name)), data)
            try:
                self.fs.pipe_file(self._path(name), data, mode="create")
                return True
            except FileExistsError:
                return False
            except OSError as err:   # s3fs 2025.3 reports S3's 412 Precondition Failed as EINVAL
                if err.errno == errno.EINVAL and self.fs.exists(self._path(name)):
                    return False
                raise

    def remove(self, name: str) -> None:
        """Remove every object under `name` (a folder of them), if any."""
        with self._translated(f"cannot remove {name}"):
            if self.fs.exists(self._path(name)):
                self.fs.rm(self._path(name), recursive=True)

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Any failure of the objects' library inside: one Unreachable naming the URL and what was done."""
        try:
            yield
        except Unreachable:
            raise
        except Exception as err:   # noqa: BLE001 - fsspec's protocols raise their own kinds
            raise Unreachable(f"{self.url} {what}: {_reason(err)}") from None


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, PermissionError) or any(word in text for word in ("signature", "InvalidAccessKeyId",
                                                                          "Forbidden", "Access Denied")):
        return f"access denied ({text}); check the credentials in the environment (AWS_ACCESS_KEY_ID, ...)"
    if "NoCredentials" in type(err).__name__ or "Unable to locate credentials" in text:
        return "no credentials: set them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or ~/.aws"
    return f"{type(err).__name__}: {text}"[:400]


def _link_new(target: Path, data: bytes) -> bool:
    """Write `data` to a temporary file beside `target`, then hard-link it there: the link fails if
    `target` exists, so exactly one of several writers creates it, and never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, target)
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(temporary)
