"""The artifact store: register --store uploads while hashing, pull verifies every byte
against the ledger before anything lands in DIR, falls back across stores and resumes;
store ls, gc, verify and sync; a local folder and an S3-compatible server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli as run

import modelchain as mc
from modelchain.artifacts.hashing import hash_path, verify_path
from modelchain.core.identity import Ed25519Signer
from modelchain.core.manifest import BLAKE3, object_ref, sharded
from modelchain.errors import IntegrityError, NotFoundError, StorageError
from modelchain.ledger.artifacts import manifest_ref
from modelchain.storage.artifacts import (
    FsspecArtifactStore,
    fetch,
    open_store,
    pull_manifest,
    put_bytes,
    verify_objects,
)

ORIGIN = "ledger.example.org/store"


def _model(root: Path, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "weights.bin").write_bytes(os.urandom(3 << 20))
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "config.json").write_text(json.dumps({"seed": seed}) + "\n")
    (root / "copy.json").write_text(json.dumps({"seed": seed}) + "\n")  # same bytes twice
    return root


def _accesses(led: mc.Ledger) -> list[dict[str, Any]]:
    return [  # the purposes are committed in the log; this side's vault opens them
        led.disclosures.reveal(led.entry(i).transaction.body)
        for i in range(led.size)
        if led.entry(i).transaction.type == "access.log"
    ]


def _flip(store: FsspecArtifactStore, ref: str, at: int = 0) -> None:
    path = Path(store._key(ref))
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


@pytest.fixture
def led(ledger: mc.Ledger, alice: Ed25519Signer, tmp_path: Path) -> mc.Ledger:
    ledger.identity = alice
    ledger.home = tmp_path / "home"  # the digest cache lives here
    return ledger


# -- local store, SDK ------------------------------------------------------------


def test_register_with_store_then_pull_round_trip(led: mc.Ledger, tmp_path: Path) -> None:
    store = led.artifact_store()
    v = led.models.register("fraud", _model(tmp_path / "m"), store=store)
    manifest = led.models.manifest("fraud", v.version)
    refs = {o.ref for o in store.objects()}
    assert refs == {object_ref("sha256", f.digest) for f in manifest.files} | {
        manifest_ref(manifest)
    }
    assert set(led.artifacts.referenced()) == refs

    dest = tmp_path / "out"
    result = led.models.pull("fraud", dest, stores=[store])
    led.models.verify(dest, "fraud", v.version)
    assert (dest / "sub" / "config.json").read_text() == '{"seed": 0}\n'
    assert result.files == 3 and not result.problems
    assert not list(tmp_path.glob(".out.modelchain-pull"))  # the staging folder is gone
    assert _accesses(led) == [
        {"artifact": {"kind": "model", "name": "fraud", "version": 1}, "purpose": "pull"}
    ]

    data = tmp_path / "train.csv"
    data.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(50)))
    d = led.datasets.register("train", data, store=store)
    led.datasets.pull("train", tmp_path / "data", stores=[store])
    assert (tmp_path / "data" / "train.csv").read_bytes() == data.read_bytes()
    assert _accesses(led)[-1]["artifact"] == {"kind": "dataset", "name": "train", "version": 1}
    assert d.version == 1


def test_every_algorithm_round_trips_through_the_store(tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    store = open_store(tmp_path / "store")
    for algorithm in ("sha256", sharded(1 << 20), BLAKE3):
        manifest = hash_path(model, algorithm=algorithm, tee=store)
        assert manifest == hash_path(model, algorithm=algorithm)  # the tee changes nothing
        pull_manifest([store], manifest, tmp_path / algorithm)
        verify_path(tmp_path / algorithm, manifest)
    assert verify_objects(store) == []


def test_pull_refuses_damaged_bytes_and_leaves_dest_untouched(
    led: mc.Ledger, tmp_path: Path
) -> None:
    store = led.artifact_store()
    led.models.register("fraud", _model(tmp_path / "m"), store=store)
    manifest = led.models.manifest("fraud")
    weights = manifest.file("weights.bin")
    assert weights is not None
    _flip(store, object_ref("sha256", weights.digest), at=1 << 20)

    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(IntegrityError) as caught:
        led.models.pull("fraud", dest, stores=[store])
    assert "weights.bin" in str(caught.value)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert _accesses(led) == []  # nothing handed out, nothing recorded

    assert [o.ref for o in verify_objects(store)] == [object_ref("sha256", weights.digest)]


def test_pull_falls_back_to_the_next_store(led: mc.Ledger, tmp_path: Path) -> None:
    a = led.artifact_store(tmp_path / "a")
    b = led.artifact_store(tmp_path / "b")
    led.models.register("fraud", _model(tmp_path / "m"), store=a)
    synced = led.artifacts.sync(b, a)
    assert len(synced.copied) == 3 and not synced.missing and not synced.damaged
    manifest = led.models.manifest("fraud")
    config = manifest.file("sub/config.json")
    weights = manifest.file("weights.bin")
    assert config is not None and weights is not None
    a.delete(object_ref("sha256", config.digest))
    _flip(a, object_ref("sha256", weights.digest))

    result = led.models.pull("fraud", tmp_path / "out", stores=[a, b])
    led.models.verify(tmp_path / "out", "fraud", 1)
    assert result.served[object_ref("sha256", weights.digest)] == b.url
    assert any("missing" in p and a.url in p for p in result.problems)
    assert any("damaged" in p and a.url in p for p in result.problems)

    with pytest.raises(NotFoundError):
        led.models.pull("fraud", tmp_path / "out2", stores=[a])


def test_an_interrupted_download_resumes_from_its_partial_file(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 << 20))
    manifest = hash_path(big, tee=store)
    ref = object_ref("sha256", manifest.files[0].digest)
    part = tmp_path / "obj.part"
    part.write_bytes(big.read_bytes()[: 5 << 20])  # what an interrupted fetch left
    moved: list[int] = []
    fetch(store, ref, 9 << 20, part, moved.append)
    assert sum(moved) == 4 << 20  # only the rest came from the store
    assert part.read_bytes() == big.read_bytes()

    # A partial file that is itself wrong is fetched again whole, once.
    bad = bytearray(big.read_bytes()[: 5 << 20])
    bad[7] ^= 1
    part.write_bytes(bytes(bad))
    moved.clear()
    fetch(store, ref, 9 << 20, part, moved.append)
    assert part.read_bytes() == big.read_bytes()
    assert sum(moved) == (4 << 20) + (9 << 20)


def test_an_interrupted_pull_continues_where_it_stopped(led: mc.Ledger, tmp_path: Path) -> None:
    store = led.artifact_store()
    model = _model(tmp_path / "m")
    (model / "weights.bin").write_bytes(os.urandom(12 << 20))
    led.models.register("fraud", model, store=store)

    class Dropping:
        """The store, with every read cut off after 5 MiB (a dropped connection)."""

        url = "flaky://" + store.url

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def open_read(self, ref: str, offset: int = 0) -> Any:
            f = store.open_read(ref, offset)
            left = [5 << 20]

            class Cut:
                def __enter__(self) -> Cut:
                    return self

                def __exit__(self, *exc: object) -> None:
                    f.close()

                def read(self, n: int) -> bytes:
                    if left[0] <= 0:
                        raise OSError("connection reset")
                    data = f.read(min(n, left[0]))
                    left[0] -= len(data)
                    return data

            return Cut()

    dest = tmp_path / "out"
    with pytest.raises(StorageError, match="connection reset"):
        led.models.pull("fraud", dest, stores=[Dropping()])  # type: ignore[list-item]
    assert not dest.exists() and _accesses(led) == []
    moved: list[int] = []
    led.models.pull("fraud", dest, stores=[store], progress=moved.append)
    led.models.verify(dest, "fraud", 1)
    # only what the first pull did not get: the rest of the weights (the JSON files,
    # 12 bytes with the same digest, came whole the first time)
    assert sum(moved) == (12 << 20) - (5 << 20)


class _CutOff:
    """A store whose uploads fail once ``after`` bytes have gone in (a network error,
    a process stopped mid-file), or pass through when ``after`` is None; it keeps
    every upload it opened, to read how many bytes each kept and wrote."""

    def __init__(self, store: FsspecArtifactStore, after: int | None) -> None:
        self.store = store
        self.url = store.url
        self.after = after
        self.uploads: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def upload(self, resume: str | None = None) -> Any:
        real = self.store.upload(resume)
        self.uploads.append(real)
        if self.after is None:
            return real
        after = self.after

        class Failing:
            def write(self, data: Any) -> None:
                if real.size + len(data) > after:
                    raise StorageError("connection reset (injected)")
                real.write(data)

            def commit(self, ref: str) -> None:
                real.commit(ref)

            def abort(self) -> None:
                real.abort()

        return Failing()


def _big(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_an_interrupted_upload_resumes_within_the_file(tmp_path: Path) -> None:
    src = _big(tmp_path / "big" / "weights.bin", 40 << 20)
    store = open_store(tmp_path / "store")
    cut = _CutOff(store, after=25 << 20)
    with pytest.raises(StorageError, match="injected"):
        hash_path(src, tee=cut)
    assert not list(store.objects())  # nothing half-written under any ref
    kept_before = sum(p.stat().st_size for p in (tmp_path / "store" / "tmp").iterdir())
    assert kept_before >= 20 << 20

    told: list[int] = []
    store.on_resume = told.append
    again = _CutOff(store, after=None)
    manifest = hash_path(src, tee=again)
    [upload] = again.uploads
    assert upload.kept == kept_before and told == [kept_before]
    assert upload.size - upload.kept == (40 << 20) - kept_before  # only the rest written
    ref = object_ref("sha256", manifest.files[0].digest)
    with store.open_read(ref) as f:
        assert f.read() == src.read_bytes()
    assert not list((tmp_path / "store" / "tmp").iterdir())


def test_a_resumed_upload_rewrites_from_where_the_kept_bytes_differ(tmp_path: Path) -> None:
    src = _big(tmp_path / "big" / "weights.bin", 40 << 20)
    store = open_store(tmp_path / "store")
    with pytest.raises(StorageError):
        hash_path(src, tee=_CutOff(store, after=30 << 20))
    [partial] = (tmp_path / "store" / "tmp").iterdir()
    with open(partial, "r+b") as f:  # damaged at rest, after 10 MiB
        f.seek(10 << 20)
        f.write(b"\xff" * 100)
    again = _CutOff(store, after=None)
    manifest = hash_path(src, tee=again)
    assert again.uploads[0].kept == 8 << 20  # up to the start of the chunk that differs
    with store.open_read(object_ref("sha256", manifest.files[0].digest)) as f:
        assert f.read() == src.read_bytes()


def test_a_second_put_of_the_same_file_meanwhile_does_not_share_its_upload(
    tmp_path: Path,
) -> None:
    import fcntl

    src = _big(tmp_path / "big" / "weights.bin", 24 << 20)
    store = open_store(tmp_path / "store")
    with pytest.raises(StorageError):
        hash_path(src, tee=_CutOff(store, after=10 << 20))
    [partial] = (tmp_path / "store" / "tmp").iterdir()
    with open(partial, "rb") as held:  # another put of the same file holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        again = _CutOff(store, after=None)
        manifest = hash_path(src, tee=again)
        assert again.uploads[0].kept == 0
    assert partial.exists()  # left to the put that holds it
    with store.open_read(object_ref("sha256", manifest.files[0].digest)) as f:
        assert f.read() == src.read_bytes()


def test_a_killed_register_resumes_its_upload(tmp_path: Path) -> None:
    src = _big(tmp_path / "big" / "weights.bin", 64 << 20)
    store_dir = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import os, signal
        from modelchain.artifacts.hashing import hash_path
        from modelchain.storage.artifacts import open_store
        store = open_store({str(store_dir)!r})
        real = store.upload
        def upload(resume=None):
            up = real(resume)
            write = up.write
            def dying(data):
                write(data)
                if up.size >= 24 << 20:
                    os.kill(os.getpid(), signal.SIGKILL)
            up.write = dying
            return up
        store.upload = upload
        hash_path({str(src)!r}, tee=store)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False)
    assert killed.returncode == -9
    store = open_store(store_dir)
    assert not list(store.objects())
    again = _CutOff(store, after=None)
    manifest = hash_path(src, tee=again)
    assert again.uploads[0].kept >= 24 << 20
    with store.open_read(object_ref("sha256", manifest.files[0].digest)) as f:
        assert f.read() == src.read_bytes()


def test_register_again_reads_nothing_the_store_holds(led: mc.Ledger, tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    # The digest cache trusts only files unchanged for a while before hashing began
    # (mtime and ctime, which no utime can set back): let them age past that.
    time.sleep(0.25)
    store = led.artifact_store()
    uploads: list[object] = []

    class Counting:
        url = store.url

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def upload(self, resume: str | None = None) -> Any:
            uploads.append(1)
            return store.upload(resume)

    led.models.register("fraud", model, store=Counting())  # type: ignore[arg-type]
    first = len(uploads)
    assert first == 4  # three files (two with the same bytes) and the manifest
    uploads.clear()
    again = led.models.register("fraud", model, store=Counting())  # type: ignore[arg-type]
    assert not again.created and uploads == []


def test_gc_lists_then_deletes_only_unreferenced_objects(led: mc.Ledger, tmp_path: Path) -> None:
    store = led.artifact_store()
    led.models.register("fraud", _model(tmp_path / "m"), store=store)
    stray = put_bytes(store, b"not registered anywhere")
    young = led.artifacts.gc(store, delete=True)  # a register may be about to use it
    assert [o.ref for o in young.recent] == [stray] and not young.unreferenced
    assert store.has(stray)
    dry = led.artifacts.gc(store, min_age_s=0)
    assert [o.ref for o in dry.unreferenced] == [stray] and store.has(stray)
    done = led.artifacts.gc(store, delete=True, min_age_s=0)
    assert done.deleted and not store.has(stray)
    assert len(list(store.objects())) == 3  # two files share their bytes
    pull_manifest([store], led.models.manifest("fraud"), tmp_path / "out")


# -- the CLI, local store --------------------------------------------------------


def test_cli_register_pull_ls_gc_verify(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    model = _model(tmp_path / "m")
    run(env, "model", "register", "fraud", str(model), "--store")
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    run(env, "dataset", "register", "rows", str(data), "--store")

    out = json.loads(run(env, "pull", "fraud@1", str(tmp_path / "out"), "--json").stdout)
    assert out["files"] == 3 and out["kind"] == "model"
    run(env, "verify", str(tmp_path / "out"), "--model", "fraud@1")
    run(env, "pull", "rows", str(tmp_path / "rows"))
    assert (tmp_path / "rows" / "d.csv").read_text() == "a,b\n1,2\n"

    listed = json.loads(run(env, "store", "ls", "--json").stdout)
    assert len(listed) == 5 and all(o["referenced"] for o in listed)

    store = open_store(Path(env["MODELCHAIN_LEDGER"]) / "artifacts")
    stray = put_bytes(store, b"stray")
    assert f"kept (written less than 3600 s ago) {stray}" in run(env, "store", "gc").stdout
    dry = run(env, "store", "gc", "--min-age", "0")
    assert f"would delete {stray}" in dry.stdout and store.has(stray)
    run(env, "store", "gc", "--yes", "--min-age", "0")
    assert not store.has(stray)

    weights = hash_path(model / "weights.bin").files[0].digest
    _flip(store, object_ref("sha256", weights), at=100)
    bad = run(env, "store", "verify", ok=False)
    assert bad.returncode == 1 and f"damaged sha256:{weights}" in bad.stderr
    refused = run(env, "pull", "fraud", str(tmp_path / "again"), ok=False)
    assert refused.returncode == 1 and "weights.bin" in refused.stderr
    assert not (tmp_path / "again").exists()


def test_cli_register_says_it_resumes_an_interrupted_upload(
    env: dict[str, str], tmp_path: Path
) -> None:
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    src = _big(tmp_path / "big" / "weights.bin", 24 << 20)
    store = open_store(Path(env["MODELCHAIN_LEDGER"]) / "artifacts")
    with pytest.raises(StorageError):
        hash_path(src, tee=_CutOff(store, after=10 << 20))  # a register cut off mid-file
    done = run(env, "model", "register", "big", str(src), "--store")
    assert "resuming an interrupted upload" in done.stderr and "8.0 MiB already" in done.stderr
    out = tmp_path / "out"
    run(env, "pull", "big", str(out))
    assert (out / "weights.bin").read_bytes() == src.read_bytes()


# -- an S3-compatible server on loopback -------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1 (start() returns once it listens)."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3,  # botocore's own setting, which s3fs honours
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def _bucket(name: str, endpoint: str) -> None:
    store = open_store(f"s3://{name}", client_kwargs={"endpoint_url": endpoint})
    if not store.fs.exists(name):
        store.fs.mkdir(name)


def test_s3_round_trip_and_fallback(led: mc.Ledger, tmp_path: Path, s3: str, s3_env: Any) -> None:
    _bucket("models", s3)
    s3_store = led.artifact_store("s3://models/org-a", client_kwargs={"endpoint_url": s3})
    model = _model(tmp_path / "m")
    (model / "big.bin").write_bytes(os.urandom(20 << 20))  # several 8 MiB parts
    led.models.register("fraud", model, store=s3_store)
    stored = list(s3_store.objects())
    assert len(stored) == 4 and all(o.modified for o in stored)  # gc's age check needs it

    empty = led.artifact_store(tmp_path / "empty")
    result = led.models.pull("fraud", tmp_path / "out", stores=[empty, s3_store])
    led.models.verify(tmp_path / "out", "fraud", 1)
    assert all(url == s3_store.url for url in result.served.values())

    # mirror the S3 copy into a local store, then a damaged S3 object falls back to it
    local = led.artifact_store(tmp_path / "mirror")
    assert len(led.artifacts.sync(local, s3_store).copied) == 4
    weights = led.models.manifest("fraud").file("big.bin")
    assert weights is not None
    key = s3_store._key(object_ref("sha256", weights.digest))  # type: ignore[attr-defined]
    s3_store.fs.pipe(key, b"tampered")  # type: ignore[attr-defined]
    result = led.models.pull("fraud", tmp_path / "out2", stores=[s3_store, local])
    assert any("damaged" in p for p in result.problems)
    led.models.verify(tmp_path / "out2", "fraud", 1)


def test_an_interrupted_s3_upload_resumes_from_its_parts(
    tmp_path: Path, s3: str, s3_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bucket("resume", s3)
    store = open_store("s3://resume/store", client_kwargs={"endpoint_url": s3})
    src = _big(tmp_path / "big" / "weights.bin", 40 << 20)
    with pytest.raises(StorageError, match="injected"):
        hash_path(src, tee=_CutOff(store, after=25 << 20))
    assert not list(store.objects())  # nothing under any ref, nor in tmp/ as an object

    sent: list[int] = []
    call = store.fs.call_s3

    def counting(method: str, **kwargs: Any) -> Any:
        if method == "upload_part":
            sent.append(len(kwargs["Body"]))
        return call(method, **kwargs)

    monkeypatch.setattr(store.fs, "call_s3", counting)
    told: list[int] = []
    store.on_resume = told.append
    again = _CutOff(store, after=None)
    manifest = hash_path(src, tee=again)
    assert again.uploads[0].kept == 24 << 20 and told == [24 << 20]  # three 8 MiB parts
    assert sum(sent) == (40 << 20) - (24 << 20)
    with store.open_read(object_ref("sha256", manifest.files[0].digest)) as f:
        assert f.read() == src.read_bytes()
    assert not store.fs.find("resume/store/tmp")

    # one left open for good: gc sees it and aborts it
    with pytest.raises(StorageError):
        hash_path(_big(tmp_path / "other.bin", 20 << 20), tee=_CutOff(store, after=10 << 20))
    [stale] = store.stale_uploads(older_than_s=-1)
    assert "tmp/resume-" in stale
    store.remove_path(stale)
    assert store.stale_uploads(older_than_s=-1) == []


def test_a_resumed_s3_upload_sends_again_from_a_part_that_differs(
    tmp_path: Path, s3: str, s3_env: Any
) -> None:
    _bucket("resume2", s3)
    store = open_store("s3://resume2/store", client_kwargs={"endpoint_url": s3})
    src = _big(tmp_path / "weights.bin", 40 << 20)
    with pytest.raises(StorageError):
        hash_path(src, tee=_CutOff(store, after=30 << 20))
    [(path, _)] = store._open_multipart()
    bucket, key, _ = store.fs.split_path(path)
    [upload] = store.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)["Uploads"]
    store.fs.call_s3(  # part 2 replaced by other bytes of the same size
        "upload_part",
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=2,
        Body=b"\0" * (8 << 20),
    )
    again = _CutOff(store, after=None)
    manifest = hash_path(src, tee=again)
    assert again.uploads[0].kept == 8 << 20  # part 1 only: from part 2 on, sent again
    with store.open_read(object_ref("sha256", manifest.files[0].digest)) as f:
        assert f.read() == src.read_bytes()


def test_cli_against_s3(env: dict[str, str], tmp_path: Path, s3: str, s3_env: Any) -> None:
    _bucket("cli", s3)
    env = {**env, **s3_env}
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    model = _model(tmp_path / "m")
    run(env, "model", "register", "fraud", str(model), "--store=s3://cli/store")
    missing = str(tmp_path / "nothing-here")
    out = run(
        env, "pull", "fraud", str(tmp_path / "out"), "--store", missing, "--store", "s3://cli/store"
    )
    assert "missing" in out.stderr  # the fallback is reported
    run(env, "verify", str(tmp_path / "out"), "--model", "fraud")
    synced = run(env, "store", "sync", "--from", "s3://cli/store", "--json")
    assert len(json.loads(synced.stdout)["copied"]) == 3


# -- a large file in bounded memory ----------------------------------------------


LARGE = textwrap.dedent(
    """
    import os, sys
    from modelchain.artifacts.hashing import hash_path
    from modelchain.storage.artifacts import open_store, pull_manifest

    work = sys.argv[1]
    size = int(sys.argv[2])
    url = sys.argv[3] if len(sys.argv) > 3 else os.path.join(work, "store")
    path = os.path.join(work, "big.bin")
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as f:  # real content, cheap: one random MiB, numbered
        for i in range(size >> 20):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)
    del block
    store = open_store(url)
    small = os.path.join(work, "small.bin")
    with open(small, "wb") as f:
        f.write(os.urandom(1 << 20))
    pull_manifest([store], hash_path(small, tee=store), os.path.join(work, "warm"))
    base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    manifest = hash_path(path, tee=store)
    pull_manifest([store], manifest, os.path.join(work, "out"))
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    peak = int(status["VmHWM"].split()[0]) * 1024
    print(peak - base)
    """
)


def _peak_growth(tmp_path: Path, size: int, *store: str, env: Any = None) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", LARGE, str(tmp_path), str(size), *store],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "big.bin").stat().st_size == size
    return int(proc.stdout.split()[-1])


def test_a_large_file_moves_in_bounded_memory(tmp_path: Path) -> None:
    grew = _peak_growth(tmp_path, 300 << 20)
    assert grew < 64 << 20, f"peak memory grew by {grew >> 20} MiB"


def test_a_large_file_moves_through_s3_in_bounded_memory(
    tmp_path: Path, s3: str, s3_env: Any
) -> None:
    _bucket("big", s3)
    grew = _peak_growth(tmp_path, 96 << 20, "s3://big/store", env={**os.environ, **s3_env})
    assert grew < 64 << 20, f"peak memory grew by {grew >> 20} MiB"


# -- the guard loads straight from the store ---------------------------------------


def test_guard_loads_safetensors_from_the_store(led: mc.Ledger, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    from modelchain import guard

    folder = tmp_path / "net"
    folder.mkdir()
    st.save_file({"w": torch.arange(6, dtype=torch.float32)}, folder / "model.safetensors")
    (folder / "config.json").write_text("{}\n")
    store = led.artifact_store()
    led.models.register("net", folder, store=store)

    weights = guard.load_safetensors(led, model="net", stores=[store])
    assert weights["w"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [a["purpose"] for a in _accesses(led)] == ["inference"]
    assert (led.home / "pulled" / "net@1" / "model.safetensors").is_file()

    # the pulled copy is verified on every load, not trusted because it was pulled
    (led.home / "pulled" / "net@1" / "config.json").write_text('{"x": 1}\n')
    with pytest.raises(IntegrityError):
        guard.load_safetensors(led, model="net", stores=[store])


def test_guard_loads_a_single_file_pickle_from_the_store(led: mc.Ledger, tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    from modelchain import guard

    path = tmp_path / "clf.joblib"
    joblib.dump({"coef": [1, 2, 3]}, path)
    store = led.artifact_store()
    led.models.register("clf", path, store=store)
    assert guard.load_sklearn(led, model="clf", version=1, stores=[store]) == {"coef": [1, 2, 3]}
    assert (led.home / "pulled" / "clf@1" / "clf.joblib").is_file()
