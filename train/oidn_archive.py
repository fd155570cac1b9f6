"""Read OIDN's trained weights out of its core library: ELF symbols, then tensor archives (TZA).

Written for this project from the published formats (no OIDN code). OIDN's core library
(``libOpenImageDenoise_core.so``) embeds each set of weights as a read-only blob named by a C++
symbol ``oidn::blobs::weights::<name>`` (mangled ``_ZN4oidn5blobs7weights<len><name>E``). This module

* finds those symbols in the library's ELF symbol tables (64-bit little-endian ELF: section headers,
  ``SHT_SYMTAB``/``SHT_DYNSYM`` entries, their string tables) and turns each symbol's address and size
  into a byte range of the file (:func:`weight_blobs`);
* parses a blob as a Tensor Archive (:func:`read_tza`), OIDN's format: a header (magic ``0x41D7``,
  major version 2, minor version, 64-bit offset of the table), and a table (32-bit count, then per
  tensor: 16-bit name length, name, 8-bit number of dimensions, 32-bit dimensions, layout letters
  such as ``oihw`` or ``x``, a data-type letter, ``f`` float32 or ``h`` float16, and the 64-bit offset of
  its data from the blob's start). All integers are little-endian.

Every read is bounds-checked: a damaged file raises :class:`ArchiveError`, never reads past its end.
"""
from __future__ import annotations

import re
import struct
from typing import Dict, Tuple

import numpy as np

TZA_MAGIC = 0x41D7
TZA_DTYPES = {"f": np.float32, "h": np.float16, "b": np.int8, "B": np.uint8}
_SYMBOL = re.compile(r"_ZN4oidn5blobs7weights(\d+)(\w+)E")
_SHT_SYMTAB, _SHT_DYNSYM = 2, 11


class ArchiveError(ValueError):
    """The library or the archive is not what the format says."""


class _Cursor:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, fmt: str) -> Tuple:
        size = struct.calcsize(fmt)
        if self.pos < 0 or self.pos + size > len(self.data):
            raise ArchiveError(f"truncated data at byte {self.pos} (needs {size} more)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ArchiveError(f"truncated data at byte {self.pos} (needs {n} more)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_tza(blob: bytes) -> Dict[str, Tuple[np.ndarray, str]]:
    """Tensors of a TZA blob: ``{name: (array, layout)}`` (arrays are copies in the stored data type)."""
    head = _Cursor(blob)
    magic, major, _minor, table = head.take("<HBBQ")
    if magic != TZA_MAGIC:
        raise ArchiveError(f"not a tensor archive (magic {magic:#06x}, expected {TZA_MAGIC:#06x})")
    if major != 2:
        raise ArchiveError(f"unsupported tensor archive version {major}")
    cur = _Cursor(blob, int(table))
    (count,) = cur.take("<I")
    tensors: Dict[str, Tuple[np.ndarray, str]] = {}
    for _ in range(count):
        (name_len,) = cur.take("<H")
        name = cur.bytes(name_len).decode("utf-8")
        (ndims,) = cur.take("<B")
        dims = cur.take(f"<{ndims}I") if ndims else ()
        layout = cur.bytes(ndims).decode("ascii")
        dtype_code = cur.bytes(1).decode("ascii")
        (offset,) = cur.take("<Q")
        if dtype_code not in TZA_DTYPES:
            raise ArchiveError(f"tensor {name!r} has unknown data type {dtype_code!r}")
        dtype = np.dtype(TZA_DTYPES[dtype_code])
        count_values = int(np.prod(dims, dtype=np.int64)) if dims else 1
        end = int(offset) + count_values * dtype.itemsize
        if end > len(blob):
            raise ArchiveError(f"tensor {name!r} runs past the end of the archive")
        array = np.frombuffer(blob, dtype=dtype.newbyteorder("<"), count=count_values, offset=int(offset))
        tensors[name] = (array.reshape(dims).astype(dtype, copy=True), layout)
    return tensors


def _sections(data: bytes):
    cur = _Cursor(data)
    ident = cur.bytes(16)
    if ident[:4] != b"\x7fELF":
        raise ArchiveError("not an ELF file")
    if ident[4] != 2 or ident[5] != 1:
        raise ArchiveError("only 64-bit little-endian ELF libraries are supported")
    cur.pos = 0x28
    (shoff,) = cur.take("<Q")
    cur.pos = 0x3A
    shentsize, shnum, _shstrndx = cur.take("<HHH")
    sections = []
    for i in range(shnum):
        c = _Cursor(data, int(shoff) + i * shentsize)
        _name, sh_type, _flags, addr, offset, size, link, _info, _align, entsize = c.take("<IIQQQQIIQQ")
        sections.append((sh_type, addr, offset, size, link, entsize))
    return sections


def weight_blobs(library: bytes) -> Dict[str, bytes]:
    """``{weights name: TZA blob}`` for every ``oidn::blobs::weights::*`` symbol of an OIDN core library."""
    sections = _sections(library)
    blobs: Dict[str, bytes] = {}
    for sh_type, _addr, offset, size, link, entsize in sections:
        if sh_type not in (_SHT_SYMTAB, _SHT_DYNSYM) or not entsize:
            continue
        if link >= len(sections):
            raise ArchiveError("symbol table links to a missing string table")
        strtab = sections[link]
        for k in range(int(size) // int(entsize)):
            st_name, _info, _other, shndx, value, st_size = _Cursor(library, int(offset) + k * int(entsize)).take(
                "<IBBHQQ")
            start = int(strtab[2]) + st_name
            end = library.find(b"\0", start)
            if end < 0:
                raise ArchiveError("unterminated symbol name")
            match = _SYMBOL.fullmatch(library[start:end].decode("ascii", "replace"))
            if not match or int(match.group(1)) != len(match.group(2)) or shndx >= len(sections) or not st_size:
                continue
            holder = sections[shndx]
            begin = int(value) - int(holder[1]) + int(holder[2])  # address -> file offset
            if begin < 0 or begin + int(st_size) > len(library):
                raise ArchiveError(f"symbol {match.group(2)} points outside the file")
            blobs[match.group(2)] = library[begin:begin + int(st_size)]
    if not blobs:
        raise ArchiveError("no oidn::blobs::weights symbols found (a stripped or non-OIDN library?)")
    return blobs
