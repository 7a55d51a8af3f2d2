"""The GGUF files of convert, quantize and lora_gguf artifacts as later stages find them: named by
the stage that wrote them, in its manifest's record, so the rule that makes a file name
(facts/layout.py's gguf_file) runs once, where the file is written."""

from __future__ import annotations

from pathlib import Path

from ..errors import StageError
from ..facts import layout
from ..store.artifacts import read_manifest


def record(ctx_record: dict, **files: Path) -> None:
    """Name the GGUF files a stage wrote (`gguf=...`, and `lora=...` for an adapter) in its record."""
    ctx_record.setdefault(layout.RECORDED_FILES, {}).update({role: Path(path).name for role, path in files.items()})


def gguf(artifact: Path, role: str = "gguf") -> Path:
    """The GGUF of `role` that the artifact's stage recorded. Artifacts built before stages named
    their files hold one GGUF of that kind: the manifest's file list finds it."""
    manifest = read_manifest(artifact) or {}
    named = manifest.get("record", {}).get(layout.RECORDED_FILES, {}).get(role)
    if named:
        return Path(artifact) / named
    listed = [name for name in manifest.get("files", {}) if name.endswith(".gguf") and "/" not in name]
    if role == "gguf" and len(listed) == 1:
        return Path(artifact) / listed[0]
    raise StageError(f"{artifact} names no {role} GGUF in its {layout.MANIFEST}: it is not a finished convert, "
                     f"quantize or lora_gguf artifact. Remove it (`doit forget` or delete the folder) and build again.")
