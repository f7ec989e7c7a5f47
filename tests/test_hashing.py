"""Hashing models and datasets: digests, OMS roots, the walk's refusals, engines, safetensors
tensors, the digest cache and verification, all on real files in temporary folders."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import blake3
import pytest

from modelchain import artifacts
from modelchain.artifacts import DigestCache, default_cache, hash_path, verify_path
from modelchain.artifacts import _engines as engines
from modelchain.core.manifest import BLAKE3, SHA256, Manifest, diff_manifests, sharded
from modelchain.errors import (
    ArtifactError,
    IntegrityError,
    MalformedError,
    NotFoundError,
    UsageError,
)

ALGORITHMS = [SHA256, BLAKE3, sharded(4096)]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def oms_root(digests_in_order: list[str]) -> bytes:
    return hashlib.sha256(b"".join(bytes.fromhex(d) for d in digests_in_order)).digest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def expected_digest(algorithm: str, data: bytes) -> str:
    if algorithm == SHA256:
        return sha256_hex(data)
    if algorithm == BLAKE3:
        return str(blake3.blake3(data).hexdigest())
    shard = int(algorithm.rsplit("-", 1)[1])
    shards = [hashlib.sha256(data[i : i + shard]).digest() for i in range(0, len(data), shard)]
    return sha256_hex(b"".join(shards))


def wait_past_racy_window() -> None:
    """Files changed less than this before hashing starts are not cached (see hashing)."""
    time.sleep(engines._RACY_NS / 1e9 + 0.05)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    write(root / "z.bin", os.urandom(5000))
    write(root / "a.b", b"dot")
    write(root / "a" / "x", b"x" * 10)
    write(root / "a" / "b" / "c.bin", os.urandom(70_000))
    write(root / "README.md", b"# model\n")
    return root


# --- digests and OMS roots -------------------------------------------------------------------


def test_public_surface() -> None:
    assert len(set(artifacts.__all__)) == len(artifacts.__all__)
    for name in artifacts.__all__:
        assert hasattr(artifacts, name)


def test_single_file_is_plain_sha256_and_sha256sum(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    f = write(tmp_path / "weights.bin", data)
    m = hash_path(f)
    assert m.name == "weights.bin"
    assert [x.path for x in m.files] == ["."]
    assert m.files[0].size == len(data)
    assert m.files[0].digest == sha256_hex(data)
    out = subprocess.run(["sha256sum", str(f)], check=True, capture_output=True, text=True)
    assert out.stdout.split()[0] == m.files[0].digest
    assert m.root == oms_root([sha256_hex(data)])
    assert m.digest == f"sha256:{m.root.hex()}"


def test_folder_paths_are_relative_posix_in_oms_order(model: Path) -> None:
    m = hash_path(model)
    assert m.name == "model"
    # By path components: "a/..." sorts before "a.b", although "/" > "." as characters.
    assert [f.path for f in m.files] == ["README.md", "a/b/c.bin", "a/x", "a.b", "z.bin"]
    for f in m.files:
        assert f.digest == sha256_hex((model / f.path).read_bytes())
        assert f.size == (model / f.path).stat().st_size
    assert m.root == oms_root([f.digest for f in m.files])
    assert m.format == "folder"
    assert not m.ignored


def test_root_matches_model_signing_files_mode(model: Path) -> None:
    ms_hashing = pytest.importorskip("model_signing.hashing")
    theirs = ms_hashing.Config().use_file_serialization().hash(model)
    pairs = [(d.identifier, d.digest.digest_hex) for d in theirs.resource_descriptors()]
    m = hash_path(model)
    assert pairs == [(f.path, f.digest) for f in m.files]


def test_trailing_slash_and_relative_path_name_the_folder(model: Path) -> None:
    cwd = os.getcwd()
    os.chdir(model)
    try:
        assert hash_path(".").name == "model"
        assert hash_path(".").digest == hash_path(f"{model}/").digest
    finally:
        os.chdir(cwd)


def test_ignored_names_are_listed_and_not_hashed(model: Path) -> None:
    write(model / ".git" / "HEAD", b"ref: refs/heads/main\n")
    write(model / "a" / "__pycache__" / "x.pyc", b"\0")
    write(model / ".gitattributes", b"*.bin filter=lfs\n")
    m = hash_path(model)
    assert m.ignored == (".git", "a/__pycache__")
    paths = [f.path for f in m.files]
    assert ".gitattributes" in paths  # it says which files are LFS: part of the model
    assert not any(p.startswith(".git/") or "__pycache__" in p for p in paths)


def test_ignore_takes_names_and_relative_paths(model: Path) -> None:
    m = hash_path(model, ignore=["README.md", "a/b"])
    assert m.ignored == ("README.md", "a/b")
    assert [f.path for f in m.files] == ["a/x", "a.b", "z.bin"]
    everything = hash_path(model, ignore=())
    assert len(everything.files) == 5


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="empty folder"):
        hash_path(tmp_path / "empty")
    write(tmp_path / "only-git" / ".git" / "HEAD", b"x")
    (tmp_path / "only-git" / "sub").mkdir()
    with pytest.raises(ArtifactError, match="empty folder"):
        hash_path(tmp_path / "only-git")


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        hash_path(tmp_path / "nope")


def test_bad_arguments(model: Path) -> None:
    with pytest.raises(MalformedError):
        hash_path(model, algorithm="md5")
    with pytest.raises(UsageError):
        hash_path(model, workers=0)


# --- refusals --------------------------------------------------------------------------------


def test_symlinks_are_refused_unless_allowed(model: Path, tmp_path: Path) -> None:
    os.symlink("z.bin", model / "link.bin")
    with pytest.raises(ArtifactError, match=r"link\.bin is a symbolic link"):
        hash_path(model)
    m = hash_path(model, allow_symlinks=True)
    assert m.allow_symlinks
    assert m.file("link.bin") is not None
    assert m.file("link.bin").digest == m.file("z.bin").digest  # type: ignore[union-attr]


def test_symlinked_folder_and_root_link(model: Path, tmp_path: Path) -> None:
    os.symlink("a", model / "alias")
    with pytest.raises(ArtifactError, match="alias"):
        hash_path(model)
    m = hash_path(model, allow_symlinks=True)
    assert m.file("alias/b/c.bin").digest == m.file("a/b/c.bin").digest  # type: ignore[union-attr]

    os.unlink(model / "alias")
    link = tmp_path / "model-link"
    os.symlink(model, link)
    with pytest.raises(ArtifactError, match="model-link is a symbolic link"):
        hash_path(link)
    assert hash_path(link, allow_symlinks=True).root == hash_path(model).root


def test_links_may_not_escape_or_loop(model: Path, tmp_path: Path) -> None:
    write(tmp_path / "secret.txt", b"outside")
    os.symlink(tmp_path / "secret.txt", model / "escape")
    with pytest.raises(ArtifactError, match="points outside"):
        hash_path(model, allow_symlinks=True)
    os.unlink(model / "escape")
    os.symlink("..", model / "a" / "up")
    with pytest.raises(ArtifactError, match="contains it"):
        hash_path(model, allow_symlinks=True)
    os.unlink(model / "a" / "up")
    os.symlink("missing", model / "dangling")
    with pytest.raises(ArtifactError, match="broken symbolic link"):
        hash_path(model, allow_symlinks=True)


def test_special_files_are_refused(model: Path, tmp_path: Path) -> None:
    os.mkfifo(model / "pipe")
    with pytest.raises(ArtifactError, match="named pipe"):
        hash_path(model)  # and does not hang opening it
    with pytest.raises(ArtifactError, match="named pipe"):
        hash_path(model / "pipe")
    os.unlink(model / "pipe")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(model / "sock"))
        with pytest.raises(ArtifactError, match="socket"):
            hash_path(model)
    with pytest.raises(ArtifactError, match="device"):
        hash_path("/dev/null")


def test_read_errors_become_artifact_errors(tmp_path: Path) -> None:
    f = write(tmp_path / "file", b"x")
    with pytest.raises(ArtifactError, match="Not a directory") as info:
        hash_path(f / "below")
    assert isinstance(info.value.__cause__, OSError)
    # A regular file whose read fails (EIO): the OSError is translated, not leaked.
    with pytest.raises(ArtifactError, match=r"cannot read /proc/self/mem") as info:
        hash_path("/proc/self/mem")
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_named(model: Path) -> None:
    (model / "z.bin").chmod(0)
    with pytest.raises(ArtifactError, match=r"z\.bin"):
        hash_path(model)


def test_a_file_written_while_hashing_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "growing.bin", os.urandom(10_000))

    wrote: list[bool] = []

    def writer(done: int, total: int) -> None:
        if not wrote:  # after the first chunk is read, before the end is reached
            wrote.append(True)
            with open(f, "ab") as out:
                out.write(b"more")

    with pytest.raises(ArtifactError, match="changed while it was being hashed"):
        hash_path(f, progress=writer)


def test_non_utf8_and_backslash_names_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "a\\b").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="backslash"):
        hash_path(root)
    os.unlink(root / "a\\b")
    with open(os.path.join(os.fsencode(root), b"bad\xff"), "wb") as out:
        out.write(b"x")
    with pytest.raises(ArtifactError, match="UTF-8"):
        hash_path(root)


# --- engines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_byte_and_every_name_counts(tmp_path: Path, algorithm: str) -> None:
    data = bytearray(os.urandom(3 * 4096 + 123))
    root = tmp_path / "m"
    write(root / "w.bin", bytes(data))
    write(root / "cfg.json", b"{}")
    first = hash_path(root, algorithm=algorithm)
    assert first.file("w.bin").digest == expected_digest(algorithm, bytes(data))  # type: ignore[union-attr]
    seen = {first.root}
    for pos in (0, 4095, 4096, len(data) // 2, len(data) - 1):
        changed = bytearray(data)
        changed[pos] ^= 1
        (root / "w.bin").write_bytes(bytes(changed))
        m = hash_path(root, algorithm=algorithm)
        assert m.file("w.bin").digest == expected_digest(algorithm, bytes(changed))  # type: ignore[union-attr]
        seen.add(m.root)
    (root / "w.bin").write_bytes(bytes(data))
    assert hash_path(root, algorithm=algorithm).root == first.root
    (root / "w.bin").rename(root / "a.bin")  # now sorts before cfg.json
    renamed = hash_path(root, algorithm=algorithm)
    assert renamed.file("a.bin").digest == first.file("w.bin").digest  # type: ignore[union-attr]
    seen.add(renamed.root)
    assert len(seen) == 7
    # The OMS root is over the digests in path order, not over the paths: a rename that
    # keeps the order keeps the root. The manifest's paths catch it.
    (root / "a.bin").rename(root / "w2.bin")
    same_order = hash_path(root, algorithm=algorithm)
    assert same_order.root == first.root
    with pytest.raises(IntegrityError) as info:
        verify_path(root, first)
    assert info.value.differences == ("added w2.bin", "removed w.bin")


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_sharded_is_sha256_of_shard_digests(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    f = write(tmp_path / "f.bin", data)
    m = hash_path(f, algorithm=sharded(4096))
    assert m.algorithm == "sha256-sharded-4096"
    shards = [hashlib.sha256(data[i : i + 4096]).digest() for i in range(0, size, 4096)]
    assert m.files[0].digest == sha256_hex(b"".join(shards))
    assert m.files[0].tensors == ()


def test_sharded_splits_one_file_across_workers(tmp_path: Path) -> None:
    data = os.urandom(9 * (1 << 20) + 3)  # ten 1 MiB shards: several tasks of four shards
    f = write(tmp_path / "f.bin", data)
    for workers in (1, 2, 3):
        m = hash_path(f, algorithm=sharded(1 << 20), workers=workers)
        assert m.files[0].digest == expected_digest(sharded(1 << 20), data)


def test_blake3_matches_the_blake3_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(1_000_003)
    f = write(tmp_path / "f.bin", data)
    want = blake3.blake3(data).hexdigest()
    assert hash_path(f, algorithm=BLAKE3).files[0].digest == want
    # The path that lets blake3 use every core for a file hashed alone.
    monkeypatch.setattr(engines, "PIPELINE_MIN", 1)
    assert hash_path(f, algorithm=BLAKE3, workers=2).files[0].digest == want


@pytest.mark.parametrize("chunk", [1000, 4096, 1 << 20])
@pytest.mark.parametrize("pipelined", [False, True])
def test_chunking_and_pipelining_do_not_change_digests(
    model: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, pipelined: bool
) -> None:
    want = hash_path(model)
    monkeypatch.setattr(engines, "CHUNK", chunk)
    monkeypatch.setattr(engines, "PIPELINE_MIN", 1 if pipelined else 1 << 62)
    for workers in (1, 2, 4):
        assert hash_path(model, workers=workers) == want


def test_many_small_files(tmp_path: Path) -> None:
    root = tmp_path / "many"
    blobs = {f"d{i % 7}/f{i}.txt": os.urandom(i % 300) for i in range(600)}
    for rel, data in blobs.items():
        write(root / rel, data)
    m = hash_path(root)
    assert len(m.files) == 600
    assert all(f.digest == sha256_hex(blobs[f.path]) for f in m.files)


def test_progress_reports_bytes_and_ends_at_the_total(model: Path) -> None:
    calls: list[tuple[int, int]] = []
    m = hash_path(model, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (m.size, m.size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# --- safetensors -----------------------------------------------------------------------------


@pytest.fixture
def state_dict() -> dict[str, object]:
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(7)
    return {
        "layer1.weight": torch.randn(64, 32, generator=g),
        "layer1.bias": torch.randn(64, generator=g).to(torch.float16),
        "embed.ids": torch.arange(1000, dtype=torch.int64).reshape(10, 100),
        "mask": torch.ones(3, 5, dtype=torch.bool),
        "empty": torch.zeros(0, 4),
    }


def save(tensors: dict[str, object], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("chunk", [777, 1 << 20])
@pytest.mark.parametrize("pipelined", [False, True])
def test_tensor_digests_are_sha256_of_raw_bytes(
    tmp_path: Path,
    state_dict: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    pipelined: bool,
) -> None:
    monkeypatch.setattr(engines, "CHUNK", chunk)
    monkeypatch.setattr(engines, "PIPELINE_MIN", 1 if pipelined else 1 << 62)
    f = save(state_dict, tmp_path / "model.safetensors")
    m = hash_path(f, workers=2)
    (fd,) = m.files
    assert fd.digest == sha256_hex(f.read_bytes())
    assert [t.name for t in fd.tensors] == sorted(state_dict)
    for t in fd.tensors:
        tensor = state_dict[t.name]
        raw = tensor.contiguous().numpy().tobytes()  # type: ignore[attr-defined]
        assert t.digest == sha256_hex(raw), t.name
        assert t.shape == tuple(tensor.shape)  # type: ignore[attr-defined]
    dtypes = {t.name: t.dtype for t in fd.tensors}
    assert dtypes == {
        "embed.ids": "I64",
        "empty": "F32",
        "layer1.bias": "F16",
        "layer1.weight": "F32",
        "mask": "BOOL",
    }
    assert m.format == "safetensors"


def test_a_changed_tensor_shows_in_the_diff(tmp_path: Path, state_dict: dict[str, object]) -> None:
    import torch

    old = hash_path(save(state_dict, tmp_path / "v1" / "model.safetensors").parent)
    changed = dict(state_dict)
    weight = state_dict["layer1.weight"].clone()  # type: ignore[attr-defined]
    weight[3, 4] += 1.0
    changed["layer1.weight"] = weight
    assert isinstance(weight, torch.Tensor)
    new = hash_path(save(changed, tmp_path / "v2" / "model.safetensors").parent)
    d = diff_manifests(old, new)
    assert d.changed == ("model.safetensors",)
    assert d.tensors_changed == ("model.safetensors:layer1.weight",)
    assert not (d.added or d.removed or d.tensors_added or d.tensors_removed)


def test_tensors_only_with_plain_sha256(tmp_path: Path, state_dict: dict[str, object]) -> None:
    f = save(state_dict, tmp_path / "model.safetensors")
    assert hash_path(f, tensors=False).files[0].tensors == ()
    assert hash_path(f, algorithm=BLAKE3).files[0].tensors == ()
    assert hash_path(f, algorithm=sharded(4096)).files[0].tensors == ()


def _safetensors_bytes(header: bytes, data: bytes = b"\0" * 16) -> bytes:
    return len(header).to_bytes(8, "little") + header + data


@pytest.mark.parametrize(
    "raw",
    [
        b"\x01\x02",
        (10**9).to_bytes(8, "little") + b"{}",
        _safetensors_bytes(b"{not json"),
        _safetensors_bytes(b"[1, 2]"),
        _safetensors_bytes(b'{"a": 1}'),
        _safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 9]}}'),
        _safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 99]}}'),
        _safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}'),
        _safetensors_bytes(b'{"a": {"shape": [2], "data_offsets": [0, 8]}}'),
        _safetensors_bytes(
            b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
            b' "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}'
        ),
        _safetensors_bytes(
            b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
            b' "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}'
        ),
        _safetensors_bytes(b"\xff\xfe"),
    ],
)
def test_malformed_safetensors_header(tmp_path: Path, raw: bytes) -> None:
    f = write(tmp_path / "bad.safetensors", raw)
    with pytest.raises(ArtifactError, match=r"bad\.safetensors"):
        hash_path(f)
    assert hash_path(f, tensors=False).files[0].digest == sha256_hex(raw)


def test_hand_written_safetensors_with_gaps_and_unknown_dtype(tmp_path: Path) -> None:
    header = (
        b'{"__metadata__": {"k": "v"},'
        b' "x": {"dtype": "NEW9", "shape": [3], "data_offsets": [10, 13]},'
        b' "y": {"dtype": "U8", "shape": [2, 2], "data_offsets": [0, 4]}}'
    )
    data = bytes(range(16))
    f = write(tmp_path / "t.safetensors", _safetensors_bytes(header, data))
    tensors = {t.name: t for t in hash_path(f).files[0].tensors}
    assert tensors["x"].digest == sha256_hex(data[10:13])
    assert tensors["y"].digest == sha256_hex(data[0:4])
    assert tensors["y"].shape == (2, 2)


# --- the digest cache ------------------------------------------------------------------------


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@pytest.fixture
def fifty(tmp_path: Path) -> Path:
    root = tmp_path / "fifty"
    for i in range(50):
        write(root / f"part-{i:02d}.bin", os.urandom(128 * 1024))
    wait_past_racy_window()
    return root


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_cache_answers_unchanged_files_without_reading_them(fifty: Path, tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "home" / "cache" / "digests.sqlite")
    assert oct((tmp_path / "home" / "cache").stat().st_mode & 0o777) == "0o700"
    first_totals: list[int] = []
    first = hash_path(fifty, cache=cache, progress=lambda d, t: first_totals.append(t))
    assert first_totals[-1] == 50 * 128 * 1024

    totals: list[int] = []
    before = _rchar()
    again = hash_path(fifty, cache=cache, progress=lambda d, t: totals.append(t))
    read = _rchar() - before
    assert again == first
    assert totals[-1] == 0  # nothing left to hash
    # The kernel's count of bytes this process read: the files hold 6.4 MB.
    assert read < 256 * 1024, read


def test_cache_catches_a_same_size_write_with_mtime_set_back(fifty: Path, tmp_path: Path) -> None:
    cache = default_cache(tmp_path / "home")
    first = hash_path(fifty, cache=cache)
    victim = fifty / "part-07.bin"
    st = victim.stat()
    new = os.urandom(st.st_size)
    victim.write_bytes(new)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_mtime_ns == st.st_mtime_ns and victim.stat().st_size == st.st_size
    second = hash_path(fifty, cache=cache)
    assert diff_manifests(first, second).changed == ("part-07.bin",)
    assert second.file("part-07.bin").digest == sha256_hex(new)  # type: ignore[union-attr]


def test_files_changed_just_before_hashing_are_not_cached(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "c.sqlite")
    f = write(tmp_path / "fresh.bin", b"fresh")
    totals: list[int] = []
    hash_path(f, cache=cache)
    hash_path(f, cache=cache, progress=lambda d, t: totals.append(t))
    assert totals[-1] == 5  # read again: too recent to trust its timestamps


def test_cache_keeps_tensors_apart_from_plain_digests(
    tmp_path: Path, state_dict: dict[str, object]
) -> None:
    f = save(state_dict, tmp_path / "m.safetensors")
    wait_past_racy_window()
    cache = DigestCache(tmp_path / "c.sqlite")
    plain = hash_path(f, tensors=False, cache=cache)
    full = hash_path(f, cache=cache)
    assert plain.files[0].tensors == () and len(full.files[0].tensors) == 5
    totals: list[int] = []
    cached = hash_path(f, cache=cache, progress=lambda d, t: totals.append(t))
    assert cached == full and totals[-1] == 0
    assert hash_path(f, algorithm=BLAKE3, cache=cache).files[0].digest == str(
        blake3.blake3(f.read_bytes()).hexdigest()
    )


def test_a_corrupt_cache_is_survived(fifty: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = DigestCache(path)
    want = hash_path(fifty)
    assert hash_path(fifty, cache=cache) == want
    totals: list[int] = []
    assert hash_path(fifty, cache=cache, progress=lambda d, t: totals.append(t)) == want
    assert totals[-1] == 0  # recreated, and working
    # Damaged under an open connection: every lookup is a miss, answers stay right.
    cache.close()
    cache = DigestCache(path)
    with open(path, "r+b") as f:
        f.write(b"garbage!" * 512)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert hash_path(fifty, cache=cache) == want
    cache.close()


def test_cache_rejects_rows_it_did_not_write(fifty: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = DigestCache(path)
    want = hash_path(fifty, cache=cache)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE digests SET digest = 'not hex', tensors = '{'")
    db.close()
    assert hash_path(fifty, cache=cache) == want


# --- verification ----------------------------------------------------------------------------


def test_verify_accepts_an_unchanged_copy(model: Path, tmp_path: Path) -> None:
    m = hash_path(model)
    copy = tmp_path / "deployed"
    shutil.copytree(model, copy)
    write(copy / ".git" / "HEAD", b"x")  # a checkout's .git is not part of the model
    verify_path(copy, m)


def test_verify_names_every_difference(
    tmp_path: Path, state_dict: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    root = tmp_path / "m"
    save(state_dict, root / "model.safetensors")
    write(root / "config.json", b"{}")
    write(root / "old.txt", b"old")
    write(root / "same.txt", b"same")
    registered = hash_path(root)
    assert registered.format == "huggingface"

    changed = dict(state_dict)
    bias = state_dict["layer1.bias"].clone()  # type: ignore[attr-defined]
    assert isinstance(bias, torch.Tensor)
    bias[0] = 42
    changed["layer1.bias"] = bias
    del changed["mask"]
    changed["extra"] = torch.zeros(2)
    save(changed, root / "model.safetensors")
    write(root / "config.json", b'{"changed": true}')
    os.unlink(root / "old.txt")
    write(root / "new.txt", b"new")
    save({"t": torch.ones(2)}, root / "extra.safetensors")

    with pytest.raises(IntegrityError) as info:
        verify_path(root, registered)
    assert info.value.differences == (
        "changed config.json",
        "changed model.safetensors",
        "changed model.safetensors:layer1.bias",
        "added extra.safetensors",
        "added new.txt",
        "added model.safetensors:extra",
        "removed old.txt",
        "removed model.safetensors:mask",
    )
    assert "8 differences" in info.value.message


def test_verify_a_manifest_made_without_tensors(
    tmp_path: Path, state_dict: dict[str, object]
) -> None:
    f = save(state_dict, tmp_path / "m" / "model.safetensors")
    write(tmp_path / "m" / "other.safetensors", (f.read_bytes()))
    registered = hash_path(f.parent, tensors=False)
    verify_path(f.parent, registered)
    mixed = hash_path(f.parent)
    mixed = Manifest(
        name=mixed.name,
        algorithm=mixed.algorithm,
        files=(mixed.files[0], registered.files[1]),
    )
    verify_path(f.parent, mixed)


def test_verify_uses_the_manifests_algorithm_and_symlink_setting(model: Path) -> None:
    os.symlink("z.bin", model / "link")
    m = hash_path(model, algorithm=sharded(4096), allow_symlinks=True)
    verify_path(model, m)
    with pytest.raises(ArtifactError, match="symbolic link"):
        verify_path(model, m, allow_symlinks=False)
    (model / "z.bin").write_bytes(b"tampered")
    with pytest.raises(IntegrityError) as info:
        verify_path(model, m)
    assert info.value.differences == ("changed link", "changed z.bin")


def test_verify_trusts_a_cache_only_when_given_one(fifty: Path, tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "c.sqlite")
    m = hash_path(fifty, cache=cache)
    totals: list[int] = []
    verify_path(fifty, m, progress=lambda d, t: totals.append(t))
    assert totals[-1] == m.size  # no cache: everything re-hashed
    totals.clear()
    verify_path(fifty, m, cache=cache, progress=lambda d, t: totals.append(t))
    assert totals[-1] == 0


def test_verify_keeps_custom_ignores_and_hashed_dot_git(model: Path) -> None:
    m = hash_path(model, ignore=["README.md"])
    (model / "README.md").write_text("edited")
    verify_path(model, m)  # still ignored
    write(model / ".git" / "HEAD", b"x")
    everything = hash_path(model, ignore=())
    verify_path(model, everything)
    (model / ".git" / "HEAD").write_bytes(b"y")
    with pytest.raises(IntegrityError, match="1 difference"):
        verify_path(model, everything)


def test_manifest_round_trips_through_json(model: Path) -> None:
    write(model / ".git" / "HEAD", b"x")
    m = hash_path(model)
    assert Manifest.from_json(m.to_json()) == m


# --- the module's surface ----------------------------------------------------------------------


def test_hashing_exports_its_public_api_and_imports_no_heavy_dependency() -> None:
    import subprocess
    import sys

    from modelchain.artifacts import hashing

    assert hashing.__all__ == [
        "DEFAULT_IGNORES",
        "Hasher",
        "Progress",
        "Tee",
        "Upload",
        "hash_path",
        "new_hasher",
        "verify_path",
    ]
    assert all(hasattr(hashing, n) for n in hashing.__all__)
    # blake3, numpy and safetensors load only where used: a plain SHA-256 hash needs none.
    code = (
        "import sys, modelchain.artifacts.hashing as h; h.hash_path(sys.argv[1]);"
        "print(sorted({'blake3', 'numpy', 'safetensors'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, __file__], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
