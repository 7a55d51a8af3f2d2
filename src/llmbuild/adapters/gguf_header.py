"""A GGUF's header, read without its weights: the key-value fields and each tensor's name and dims.

The one place llmbuild reads a GGUF's metadata for itself (llama_cpp_vocab.py asks llama.cpp what it
makes of a file), on gguf-py's own constants: the magic, the versions its reader accepts,
GGUFValueType. The header is walked here rather than through gguf-py's GGUFReader,
which builds a Python object per array element: 5 s for a 49k-token vocabulary, 37 s for Gemma 4's
262k tokens and 515k merges. This reads the same sections in about a second and decodes only the
fields a caller asks for. Copying a whole file (gguf_split.py) does go through GGUFReader
(`read_whole`), since that needs the tensor data mapped as gguf-py's writer takes it.

gguf is imported where a file is read, not here: it loads numpy, which planning never needs.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError

if TYPE_CHECKING:
    from gguf import GGUFValueType

# numpy's code for each scalar GGUFValueType, by member name
_NUMBERS = {"UINT8": "u1", "INT8": "i1", "UINT16": "u2", "INT16": "i2", "UINT32": "u4", "INT32": "i4",
            "UINT64": "u8", "INT64": "i8", "FLOAT32": "f4", "FLOAT64": "f8", "BOOL": "?"}


@dataclass(frozen=True)
class Field:
    """A key-value field with its gguf-py types, as GGUFWriter.add_key_value takes it back."""
    value: Any
    type: GGUFValueType
    item_type: GGUFValueType | None = None   # an array's element type


def read_fields(path: Path, wanted: Callable[[str], bool] = lambda key: True) -> dict[str, Any]:
    """The key-value fields whose key `wanted` accepts, as gguf-py's ReaderField.contents() gives them
    (arrays as lists). Raises OSError or ValueError for a file that is not a readable GGUF."""
    return _walk(path, wanted, arrays=True, tensors=False)[0]


def read_gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The scalar metadata (arrays such as the vocabulary are left out) and every tensor's dims, in
    GGUF order (innermost first)."""
    try:
        return _walk(path, lambda key: True, arrays=False, tensors=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read it as a GGUF file ({err})") from None


def read_whole(path: Path) -> tuple[dict[str, Field], list]:
    """Every key-value field with its types, and every tensor as gguf-py's ReaderTensor (its data
    mapped, not read): what copying the file takes. Through GGUFReader, so seconds for a large
    vocabulary."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(path))
    fields = {name: Field(field.contents(), field.types[0],
                          field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None)
              for name, field in reader.fields.items()
              if not name.startswith("GGUF.")}   # GGUFReader's own entries for the header's counts
    return fields, list(reader.tensors)


def _walk(path: Path, wanted: Callable[[str], bool], arrays: bool,
          tensors: bool) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The wanted fields (arrays only if `arrays`) and, if `tensors`, each tensor's dims."""
    from gguf.constants import GGUF_MAGIC, GGUFValueType
    from gguf.gguf_reader import READER_SUPPORTED_VERSIONS

    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < 24:
            raise ValueError(f"it is {size} bytes long, shorter than a GGUF header")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if struct.unpack_from("<I", data)[0] != GGUF_MAGIC:
                raise ValueError(f"it starts with {bytes(data[:4])!r}, not GGUF's magic")
            cursor = _Cursor(data)
            if cursor.version not in READER_SUPPORTED_VERSIONS:
                raise ValueError(f"GGUF version {cursor.version}; gguf-py reads versions "
                                 f"{', '.join(map(str, READER_SUPPORTED_VERSIONS))}")
            n_tensors, n_fields = cursor.u64(), cursor.u64()
            fields: dict[str, Any] = {}
            keys: set[str] = set()
            for _ in range(n_fields):
                key = cursor.text()
                if key in keys:   # llama.cpp and GGUFReader refuse such a file too
                    raise ValueError(f"the key {key} appears twice")
                keys.add(key)
                kind = GGUFValueType(cursor.u32())
                keep = wanted(key) and (arrays or kind != GGUFValueType.ARRAY)
                found = cursor.value(kind, keep)
                if keep:
                    fields[key] = found
            shapes: dict[str, tuple[int, ...]] = {}
            for _ in range(n_tensors if tensors else 0):
                name = cursor.text()
                if name in shapes:
                    raise ValueError(f"the tensor {name} appears twice")
                shapes[name] = tuple(cursor.numbers("u8", cursor.u32()))
                cursor.u32(), cursor.u64()   # the tensor's type and its data offset
            return fields, shapes


class _Cursor:
    """Reads a GGUF header front to back; a read past the end of the file is a ValueError."""

    def __init__(self, data: mmap.mmap):
        self.data, self.at = data, 4
        # as GGUFReader does: a file of the other byte order reads its version as 0x0N000000
        self.order = "<" if struct.unpack_from("<I", data, 4)[0] & 0xFFFF else ">"
        self._u32, self._u64 = struct.Struct(self.order + "I"), struct.Struct(self.order + "Q")
        self.version = self.u32()

    def _take(self, size: int) -> int:
        start, self.at = self.at, self.at + size
        if self.at > len(self.data):
            raise ValueError(f"it ends at byte {len(self.data)}, inside its header")
        return start

    def numbers(self, code: str, count: int, decode: bool = True) -> list | None:
        import numpy

        dtype = numpy.dtype(self.order + code)
        start = self._take(dtype.itemsize * count)
        return numpy.frombuffer(self.data, dtype, count, start).tolist() if decode else None

    def u32(self) -> int:
        return self._u32.unpack_from(self.data, self._take(4))[0]

    def u64(self) -> int:
        return self._u64.unpack_from(self.data, self._take(8))[0]

    def text(self, decode: bool = True) -> str | None:
        size = self.u64()
        start = self._take(size)
        return self.data[start:start + size].decode("utf-8") if decode else None

    def value(self, kind: GGUFValueType, decode: bool) -> Any:
        """A value of GGUFValueType `kind` (arrays as lists), or None where not `decode`d."""
        from gguf.constants import GGUFValueType

        if kind == GGUFValueType.STRING:
            return self.text(decode)
        if kind != GGUFValueType.ARRAY:
            found = self.numbers(_NUMBERS[kind.name], 1, decode)
            return found[0] if decode else None
        item = GGUFValueType(self.u32())
        count = self.u64()
        if item == GGUFValueType.STRING:
            items = [self.text(decode) for _ in range(count)]
        elif item == GGUFValueType.ARRAY:
            items = [self.value(item, decode) for _ in range(count)]
        else:
            return self.numbers(_NUMBERS[item.name], count, decode)
        return items if decode else None
