"""Which files an artifact is made of: the walk of a folder, its ignore rules and its
symbolic-link rules, and the file-identity checks that tell a reader a file changed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ArtifactError, NotFoundError

__all__ = [
    "DEFAULT_IGNORES",
    "Found",
    "Listing",
    "changed",
    "list_files",
    "same_file",
    "split_ignore",
    "unreadable",
]

# Tool and version-control litter, ignored wherever it appears (and listed in the manifest).
# .gitattributes is not here: in a Hugging Face repository it says which files are LFS.
DEFAULT_IGNORES: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".DS_Store",
    ".ipynb_checkpoints",
)

Found = tuple[str, str, str, os.stat_result]
"""A regular file found: (OMS path, path to open, path as the caller wrote it, stat)."""


@dataclass(frozen=True)
class Listing:
    """What ``list_files`` found at a path: every regular file (one, named ``.``, for a
    file) and the ignored paths."""

    root: str  # absolute
    is_dir: bool
    files: list[Found]
    ignored: list[str]


def split_ignore(ignore: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """Ignore entries as (names skipped wherever they appear, paths relative to the root)."""
    if isinstance(ignore, str):
        ignore = (ignore,)
    names: set[str] = set()
    paths: set[str] = set()
    for item in ignore:
        item = item.strip("/")
        if item:
            (paths if "/" in item else names).add(item)
    return frozenset(names), frozenset(paths)


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


def changed(shown: str) -> ArtifactError:
    return ArtifactError(
        f"{shown} changed while it was being hashed; hash it again once nothing writes to it"
    )


def unreadable(shown: str, exc: OSError) -> ArtifactError:
    return ArtifactError(f"cannot read {shown}: {exc.strerror or exc}")


def _check_name(rel: str, shown: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ArtifactError(f"{shown!r}: file name is not valid UTF-8") from None
    if "\\" in rel:
        raise ArtifactError(f"{shown}: a backslash in a file name cannot be an OMS path")


def _kind(mode: int) -> str:
    """What a file that is not regular is, for an error message."""
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _refuse_link(shown: str) -> ArtifactError:
    return ArtifactError(
        f"{shown} is a symbolic link; links are refused unless allowed (allow_symlinks)"
    )


def list_files(
    path: str | os.PathLike[str],
    names: frozenset[str],
    paths: frozenset[str],
    allow_symlinks: bool,
) -> Listing:
    """The regular files of a file or folder, with ``names`` and ``paths`` ignored.

    Symbolic links are refused unless ``allow_symlinks``, and even then must stay inside
    the folder; anything but regular files and folders is refused; so is an empty folder."""
    shown_root = os.fspath(path)
    root = os.path.abspath(shown_root)
    try:
        lst = os.lstat(root)
        if stat.S_ISLNK(lst.st_mode):
            if not allow_symlinks:
                raise _refuse_link(shown_root)
            try:
                st = os.stat(root)
            except FileNotFoundError:
                raise ArtifactError(f"{shown_root} is a broken symbolic link") from None
        else:
            st = lst
    except FileNotFoundError as exc:
        raise NotFoundError(f"{shown_root}: no such file or folder") from exc
    except OSError as exc:
        raise unreadable(shown_root, exc) from exc

    ignored: list[str] = []
    if stat.S_ISDIR(st.st_mode):
        found, ignored = _walk(root, st, shown_root, names, paths, allow_symlinks)
        if not found:
            extra = (
                f" ({len(ignored)} ignored: {', '.join(sorted(ignored)[:5])})" if ignored else ""
            )
            raise ArtifactError(f"{shown_root} is an empty folder: nothing to hash{extra}")
        return Listing(root, True, found, ignored)
    if stat.S_ISREG(st.st_mode):
        return Listing(root, False, [(".", root, shown_root, st)], ignored)
    raise ArtifactError(f"{shown_root} is a {_kind(st.st_mode)}, not a file or folder")


def _walk(
    root: str,
    root_st: os.stat_result,
    shown_root: str,
    names: frozenset[str],
    paths: frozenset[str],
    allow_symlinks: bool,
) -> tuple[list[Found], list[str]]:
    """Every regular file under ``root`` as (rel, path, shown, stat), and the ignored paths."""
    files: list[Found] = []
    ignored: list[str] = []
    real_root = os.path.realpath(root)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset({(root_st.st_dev, root_st.st_ino)}))
    ]
    while stack:
        directory, prefix, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                found = list(it)
        except OSError as exc:
            raise unreadable(os.path.join(shown_root, prefix) or shown_root, exc) from exc
        for e in found:
            rel = prefix + e.name
            shown = os.path.join(shown_root, rel)
            if e.name in names or rel in paths:
                ignored.append(rel)
                continue
            _check_name(rel, shown)
            try:
                if e.is_symlink():
                    if not allow_symlinks:
                        raise _refuse_link(shown)
                    target = os.path.realpath(e.path)
                    if os.path.commonpath([real_root, target]) != real_root:
                        raise ArtifactError(
                            f"{shown} is a symbolic link that points outside {shown_root}"
                        )
                    try:
                        st = os.stat(e.path)
                    except FileNotFoundError:
                        raise ArtifactError(f"{shown} is a broken symbolic link") from None
                else:
                    st = e.stat(follow_symlinks=False)
            except OSError as exc:
                raise unreadable(shown, exc) from exc
            if stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    raise ArtifactError(f"{shown} is a symbolic link to a folder that contains it")
                stack.append((e.path, rel + "/", ancestors | {ident}))
            elif stat.S_ISREG(st.st_mode):
                files.append((rel, e.path, shown, st))
            else:
                raise ArtifactError(f"{shown} is a {_kind(st.st_mode)}, not a regular file")
    return files, ignored
