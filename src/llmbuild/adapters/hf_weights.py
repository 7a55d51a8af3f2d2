"""An HF model folder's weights as their safetensors headers describe them: names and shapes, no
weight loaded."""

from __future__ import annotations

from pathlib import Path


def linear_inputs(model: Path, ignored: tuple[str, ...] = ()) -> dict[str, int]:
    """Input features of each kind of linear layer (`self_attn.q_proj` -> 576): the 2-D weights other
    than embeddings and the `ignored` layers."""
    from safetensors import safe_open

    found: dict[str, int] = {}
    for path in sorted(Path(model).glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as weights:
            for name in weights.keys():
                if not name.endswith(".weight") or "embed" in name or any(i in name for i in ignored):
                    continue
                shape = weights.get_slice(name).get_shape()
                if len(shape) == 2:
                    parts = name[:-len(".weight")].split(".")
                    found[".".join(parts[-2:])] = int(shape[1])
    return found
