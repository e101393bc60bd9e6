"""The storage layer behaves the same on a local disk, ``file://`` and a real S3-speaking server (moto), and
names the URI and the reason when a store cannot be used, before any work."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from pipelines import storage
from tests.support.s3 import moto_s3


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        server.create_buckets("store")
        yield server


@pytest.fixture()
def s3_env(s3, monkeypatch):
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture(params=["local", "file", "s3"])
def root(request, tmp_path):
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        return f"s3://store/{tmp_path.name}"
    return str(tmp_path / "root") if request.param == "local" else f"file://{tmp_path / 'root'}"


def test_write_read_list_delete_alike_everywhere(root):
    storage.check_reachable(root)
    target = storage.join(root, "part", "a.json")
    assert storage.info(target).type == pafs.FileType.NotFound
    storage.write_json(target, {"rows": 3})
    storage.write_bytes(storage.join(root, "part", "b.bin"), b"\x00\x01")
    assert storage.is_file(target) and storage.read_json(target) == {"rows": 3}
    listed = storage.list_dir(storage.join(root, "part"))
    assert sorted(e.base_name for e in listed) == ["a.json", "b.bin"]  # no temporaries left behind
    full = [storage.uri_of(root, e) for e in listed if e.base_name == "b.bin"]
    assert storage.read_bytes(full[0]) == b"\x00\x01" and full[0].startswith(root.split("://")[0])
    storage.write_json(target, {"rows": 4})  # replaced whole
    assert storage.read_json(target) == {"rows": 4}
    assert storage.basename(target) == "a.json" and storage.parent(target).rstrip("/").endswith("part")
    storage.delete_dir(storage.join(root, "part"))
    assert storage.list_dir(storage.join(root, "part")) == []
    storage.delete_dir(storage.join(root, "part"))  # absent is fine


def test_unusable_stores_are_named_with_the_reason(s3_env, monkeypatch):
    with pytest.raises(storage.StorageError, match=r"s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"):
        storage.check_reachable("s3://no-such-bucket/x")
    with pytest.raises(storage.StorageError, match=r"^s3://: the URI names no bucket"):
        storage.resolve("s3://")
    with pytest.raises(storage.StorageError, match=r"^nosuch://a/b: unknown storage scheme 'nosuch'"):
        storage.resolve("nosuch://a/b")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(storage.StorageError, match=r"s3://store/x: cannot reach the storage .*connect"):
        storage.check_reachable("s3://store/x")


def test_local_paths_are_never_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, inner = storage.resolve("rel/dir")
    assert isinstance(fs, pafs.LocalFileSystem) and inner == str(tmp_path / "rel" / "dir")
    assert storage.join("rel", "a") == "rel/a" and storage.join("s3://b/p/", "/a") == "s3://b/p/a"
    storage.check_reachable("rel/dir")  # a local path needs no probe
