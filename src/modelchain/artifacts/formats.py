"""Name the format of a model or dataset path from file names and magic bytes.

Cheap by design: it reads at most a few kilobytes of one file (and a zip's directory),
and never unpickles or loads anything.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

__all__ = ["FORMATS", "detect_format"]

FORMATS = (
    "safetensors",
    "pytorch",
    "onnx",
    "sklearn",
    "huggingface",
    "csv",
    "parquet",
    "folder",
    "file",
)

# torch.save's legacy (non-zip) format starts with this pickled magic number.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ZIP_MAGIC = b"PK\x03\x04"
_PARQUET_MAGIC = b"PAR1"
_SAFETENSORS_MAX_HEADER = 100_000_000

_BY_SUFFIX = {
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".skops": "sklearn",
    ".csv": "csv",
    ".parquet": "parquet",
}
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
# Inside a folder only names are looked at; .bin is too generic to count as torch there.
_FOLDER_SUFFIXES = {**_BY_SUFFIX, ".pt": "pytorch", ".pth": "pytorch"}
# Weights that, beside a config.json, make a folder a Hugging Face model repository.
_HF_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".gguf")
# Files that describe a folder rather than make up its content.
_DOC_SUFFIXES = (".md", ".txt", ".json", ".yaml", ".yml", ".toml", ".cfg", ".model")
_MAX_LISTED = 10_000


def _sniff(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
            if head.startswith(_ZIP_MAGIC):
                return _sniff_zip(f, path.suffix.lower())
    except (OSError, zipfile.BadZipFile):
        return None
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "pytorch"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n <= _SAFETENSORS_MAX_HEADER and 8 + n <= size:
            return "safetensors"
    if path.suffix.lower() in _TORCH_SUFFIXES and head[:1] == b"\x80":
        return "pytorch"  # a pickle saved under a torch name
    return None


def _sniff_zip(f: BinaryIO, suffix: str) -> str | None:
    with zipfile.ZipFile(f) as z:
        names = z.namelist()
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch"
    if suffix == ".skops" or "schema.json" in names:
        return "sklearn"
    return None


def _kind_of_file(path: Path) -> str:
    sniffed = _sniff(path)
    if sniffed is not None:
        return sniffed
    suffix = path.suffix.lower()
    if suffix in _TORCH_SUFFIXES:
        return "file"  # .bin is also any binary blob: only the magic bytes make it torch
    return _BY_SUFFIX.get(suffix, "file")


def _list_files(root: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        rel = Path(dirpath).relative_to(root)
        out.extend((rel / name).as_posix() for name in filenames)
        if len(out) >= _MAX_LISTED:
            break
    return out


def _kind_of_folder(root: Path, files: Iterable[str]) -> str:
    rels = [PurePosixPath(f) for f in files]
    top = {r.name for r in rels if len(r.parts) == 1}
    if "config.json" in top and any(
        len(r.parts) == 1 and r.suffix.lower() in _HF_WEIGHT_SUFFIXES for r in rels
    ):
        return "huggingface"
    content = [
        r
        for r in rels
        if not r.name.startswith(".")
        and r.suffix.lower() not in _DOC_SUFFIXES
        and not r.name.upper().startswith(("LICENSE", "README", "NOTICE"))
    ]
    kinds = {_FOLDER_SUFFIXES.get(r.suffix.lower(), "") for r in content}
    if len(kinds) == 1 and "" not in kinds:
        return kinds.pop()
    return "folder"


def detect_format(path: Path, *, files: Iterable[str] | None = None) -> str:
    """One of :data:`FORMATS` for a file or folder.

    A folder is ``huggingface`` when it has a top-level ``config.json`` beside weights,
    the kind its content files share when they all share one (a folder of parquet files is
    ``parquet``), else ``folder``. ``files`` (relative POSIX paths) saves listing a folder
    that the caller has already walked.
    """
    path = Path(path)
    if path.is_dir():
        return _kind_of_folder(path, _list_files(path) if files is None else files)
    return _kind_of_file(path)
