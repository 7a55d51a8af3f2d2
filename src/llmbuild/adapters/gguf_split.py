"""Split GGUF files (llama.cpp's `<name>-00001-of-00003.gguf` convention, with split.* metadata):
written by gguf-py's GGUFWriter, which splits by size, and merged back into one file by llama.cpp's
own loader (llama_model_quantize in copy mode reads every shard)."""

from __future__ import annotations

import ctypes
from functools import partial
from pathlib import Path

from ..errors import ConfigError, ToolError
from ..facts.gguf_files import shards_of
from . import native
from .gguf_header import read_whole


def split(source: Path, out_dir: Path, max_bytes: int) -> list[Path]:
    """Write `source` as shards of at most `max_bytes` of tensor data each (one shard when it fits)."""
    from gguf import GGUFWriter, Keys

    fields, tensors = read_whole(source)
    architecture = fields[Keys.General.ARCHITECTURE].value
    writer = GGUFWriter(str(out_dir / source.name), architecture, split_max_size=max_bytes)
    for name, field in fields.items():
        if name != Keys.General.ARCHITECTURE:   # written by GGUFWriter itself
            writer.add_key_value(name, field.value, field.type, sub_type=field.item_type)
    for tensor in tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=None, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    written = sorted(out_dir.glob(source.stem + "-*-of-*.gguf")) or [out_dir / source.name]
    if not all(p.is_file() for p in written):
        raise ToolError(f"gguf-py wrote no shards of {source.name}")
    return written


def merge(first: Path, target: Path) -> None:
    """One GGUF from a split one, through llama.cpp's loader (copy mode: tensors unchanged), in a forked
    copy of this process (native.py), where a crash of the library is a ToolError."""
    missing = [p.name for p in shards_of(first) or [] if not p.is_file()]
    if missing:
        raise ConfigError(f"model.path = {first}: shards missing beside it: {', '.join(missing)}. "
                          f"Put every file of the split GGUF in one folder.")
    native.run_contained(partial(_merge, first, target), what=f"merging the split GGUF {first.name}")


def _merge(first: Path, target: Path) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.only_copy = True
    params.keep_split = False
    status = llama_cpp.llama_model_quantize(str(first).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0 or not target.is_file():
        raise ToolError(f"llama.cpp could not merge the split GGUF {first.name} (status {status})")
