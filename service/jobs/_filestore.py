"""Where the files jobs make are kept so that every process can read them.

On a Procfile platform ``web`` and ``worker`` run on different machines with disks of
their own that do not last, so by default a file goes into Redis, next to the job that
made it, and lives as long as the job's record (``SWITCHYARD_JOB_TTL``). With
``STORAGE_DIR`` set, files go to that directory instead, for setups whose processes
share a disk (a relative ``STORAGE_DIR`` is relative to each process's working
directory).

    {ns}file:{tenant}:{name}   string: the file's bytes (the tenant URL-quoted)
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

import redis

from adapters import AdapterSettings
from adapters.connections import redis_client

from service import config

__all__ = ["FileStore", "RedisFileStore", "DirectoryFileStore", "file_store", "tenant_dir",
           "write_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (making its directory) so that a reader sees the old file
    or the whole new one, never half of it: a hidden temporary file beside it, renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=f"{path.suffix}.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # as a plain open() would have made it: mkstemp's 0600 would hide it from a
        # process of another user (a web process reading a report, a mail pick-up)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tenant_dir(tenant: str) -> str:
    """The tenant's folder (or key) name: the tenant, with anything unsafe escaped."""
    name = quote(tenant, safe="")
    return {".": "%2E", "..": "%2E%2E", "": "%00"}.get(name, name)


class FileStore:
    """Put and get a tenant's files by name. Do not use directly."""

    def put(self, tenant: str, name: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, tenant: str, name: str) -> bytes | None:
        """The file's bytes, or ``None`` if there is none (never made, or expired)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class RedisFileStore(FileStore):
    """Files as Redis strings, kept ``ttl`` seconds: reachable from every machine."""

    def __init__(self, client: redis.Redis, namespace: str, ttl: int):
        self.r = client
        self.ns = namespace
        self.ttl = ttl

    def key(self, tenant: str, name: str) -> str:
        return f"{self.ns}file:{tenant_dir(tenant)}:{name}"

    def put(self, tenant: str, name: str, data: bytes) -> None:
        self.r.set(self.key(tenant, name), data, ex=self.ttl)

    def get(self, tenant: str, name: str) -> bytes | None:
        return self.r.get(self.key(tenant, name))

    def describe(self) -> str:
        return "Redis"


class DirectoryFileStore(FileStore):
    """Files under ``root/<tenant>/``, written atomically (readers never see half a file)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, tenant: str, name: str) -> Path:
        return self.root / tenant_dir(tenant) / name

    def put(self, tenant: str, name: str, data: bytes) -> None:
        write_atomically(self.path(tenant, name), data)

    def get(self, tenant: str, name: str) -> bytes | None:
        try:
            return self.path(tenant, name).read_bytes()
        except FileNotFoundError:
            return None

    def describe(self) -> str:
        return f"the directory {self.root}"


_lock = threading.Lock()
_stores: dict[tuple, FileStore] = {}


def file_store() -> FileStore:
    """The configured store of this process (``STORAGE_DIR``, else Redis)."""
    directory = config.storage_dir()
    settings = AdapterSettings.from_env()
    key = (os.getpid(), str(directory), settings.redis_url, settings.redis_tls_verify,
           settings.redis_ca_file, settings.namespace)
    with _lock:
        store = _stores.get(key)
        if store is None:
            if directory is not None:
                store = DirectoryFileStore(directory)
            else:
                # bytes in, bytes out: a client that does not decode
                store = RedisFileStore(redis_client(
                    settings, socket_connect_timeout=settings.redis_timeout,
                    socket_timeout=settings.redis_timeout), settings.home_namespace, settings.job_ttl)
            _stores[key] = store
        return store
