"""What a model.path may name, decided once for the base stage's key (plan/keys.py), the base stage
(stages/base.py) and `doit size` (sizing/shape.py), so that none of them accepts what another refuses:

- an HF model folder: config.json, weights and a tokenizer, as `save_pretrained` writes them;
- a GGUF file, or the first file of a split one (`<name>-00001-of-00003.gguf`, the others beside it).

Either written as an absolute or project-relative path, or as `pkg:<module>/<file>` (paths.py
resolves the spelling). A Hugging Face id is not a model.path: it goes in model.hub_id, used when
model.path is unset. Told apart by names and four bytes, never by reading weights, so planning
stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..facts.gguf_files import shards_of

HF_FOLDER = "HF model folder"
GGUF = "GGUF file"
ACCEPTED = "an HF model folder (config.json, weights and a tokenizer) or a .gguf file (the first of a split one)"
WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.pt")
TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelPath:
    """A resolved model.path and what it names."""

    path: Path
    kind: str | None            # HF_FOLDER (a folder with config.json), GGUF (a .gguf file), or None: neither
    problem: str | None         # why a build cannot start from it, for people; None when it can
    files: tuple[Path, ...]     # what the model is made of: every shard of a split GGUF, else the path itself

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def split(self) -> bool:
        """A file of a split GGUF: llama.cpp reads every shard, other tools need them merged."""
        return self.kind == GGUF and shards_of(self.path) is not None


def inspect_model_path(path: Path) -> ModelPath:
    """What `path` (resolved: paths.resolve_model_path) is as a base model, and what keeps a build
    from starting from it. A folder with config.json is an HF folder even when it lacks weights
    (`doit size` reads its shape); `problem` says what the build would miss."""
    path = Path(path)
    if path.is_dir():
        has_config = (path / "config.json").is_file()
        missing = [what for what, found in (
            ("config.json", has_config),
            ("weights (*.safetensors or *.bin)", any(next(path.glob(p), None) for p in WEIGHTS)),
            ("a tokenizer (tokenizer.json, tokenizer.model or vocab.json)",
             any((path / t).is_file() for t in TOKENIZER)),
        ) if not found]
        problem = (f"{path} lacks {', '.join(missing)}; an HF model folder needs config.json, weights and a "
                   f"tokenizer (as `save_pretrained` writes them)") if missing else None
        return ModelPath(path, HF_FOLDER if has_config else None, problem, (path,))
    if not path.exists():
        return ModelPath(path, None, f"{path} does not exist", (path,))
    if path.suffix != ".gguf":
        return ModelPath(path, None, f"{path} is neither an HF model folder nor a .gguf file", (path,))
    with open(path, "rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    problem = None if magic == GGUF_MAGIC else \
        f"{path} is not a GGUF file (it does not start with GGUF's magic bytes); re-download it"
    return ModelPath(path, GGUF, problem, tuple(shards_of(path) or (path,)))
