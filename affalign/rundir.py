"""One run directory (local or s3://): every read and write of a run's outputs and work tables.

* ``publish_*``: a file is written under ``_tmp/`` and moved into place once complete, so a reader
  never sees a half-written file and a failed run leaves no partial result under its final name;
* ``write_part``: a part file of a table (work rows, generations, scores) named by a hash of its
  row keys, so a batch written twice (a retried task) replaces its own file instead of adding a copy;
* ``read_parts``: every readable part of a directory; an unreadable one (a writer killed mid-file on
  a store without atomic moves) is deleted with a warning, so its rows count as not done;
* ``mark_done``/``is_done``: a directory's completion marker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from affalign.errors import InputError

log = logging.getLogger("affalign")

DONE_MARKER = "_SUCCESS"
PART_PREFIX = "part-"


def filesystem(uri: str, s3_endpoint: str | None = None, s3_region: str | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a local path or ``s3://`` URI.

    S3 credentials come from the standard AWS chain (environment, profile, instance role); the
    endpoint override serves S3-compatible stores.
    """
    if uri.startswith("s3://"):
        kwargs: dict[str, Any] = {}
        # pyarrow does not read the AWS CLI's endpoint variables; honour them so `affalign synth` and
        # a job without `s3.endpoint` reach the same S3-compatible store as boto3 would
        s3_endpoint = s3_endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if s3_endpoint:
            kwargs["endpoint_override"] = s3_endpoint
            if s3_endpoint.startswith("http://"):
                kwargs["scheme"] = "http"
        if s3_region:
            kwargs["region"] = s3_region
        return pafs.S3FileSystem(**kwargs), uri[len("s3://") :].rstrip("/")
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), uri


class RunDir:
    """An output directory (local or s3://) whose files are published atomically.

    Files are written under ``_tmp/`` and moved into place once complete, so a reader never sees a
    half-written file and a failed run leaves no partial result under its final name.
    """

    def __init__(self, uri: str, s3_endpoint: str | None = None, s3_region: str | None = None):
        self.uri = uri.rstrip("/")
        self.fs, self.root = filesystem(self.uri, s3_endpoint, s3_region)
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as exc:  # e.g. a missing S3 bucket or no permission: exit 2 naming the URI
            raise InputError(f"{self.uri}: cannot create the output directory: {exc}") from exc

    @classmethod
    def on(cls, root: str, fs: pafs.FileSystem | None = None) -> RunDir:
        """A run directory at ``root``: a local path or URI, or (with ``fs``) a path in that filesystem."""
        if fs is None:
            return cls(root if "://" in root else os.path.abspath(root))
        run = cls.__new__(cls)
        run.uri, run.fs, run.root = root.rstrip("/"), fs, root.rstrip("/")
        run.fs.create_dir(run.root, recursive=True)
        return run

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def uri_of(self, *parts: str) -> str:
        return posixpath.join(self.uri, *parts)

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def _tmp(self, name: str, tmp_dir: str = "_tmp") -> str:
        tmp_dir = self.path(tmp_dir)
        self.fs.create_dir(tmp_dir, recursive=True)
        return posixpath.join(tmp_dir, f"{uuid.uuid4().hex}-{posixpath.basename(name)}")

    def publish_bytes(self, rel: str, data: bytes) -> str:
        tmp = self._tmp(rel)
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        return self._move(tmp, rel)

    def publish_table(self, rel: str, table: pa.Table, tmp_dir: str = "_tmp") -> str:
        tmp = self._tmp(rel, tmp_dir)
        with self.fs.open_output_stream(tmp) as out:
            pq.write_table(table, out, compression="zstd")
        return self._move(tmp, rel)

    def _move(self, tmp: str, rel: str) -> str:
        dest = self.path(rel)
        self.fs.create_dir(posixpath.dirname(dest), recursive=True)
        self.fs.move(tmp, dest)
        return dest

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def read_table(self, rel: str) -> pa.Table:
        with self.fs.open_input_file(self.path(rel)) as f:
            return pq.read_table(f)

    def delete_dir(self, rel: str) -> None:
        p = self.path(rel)
        if self.fs.get_file_info(p).type == pafs.FileType.Directory:
            self.fs.delete_dir(p)

    def delete_file(self, rel: str) -> None:
        p = self.path(rel)
        if self.fs.get_file_info(p).type == pafs.FileType.File:
            self.fs.delete_file(p)

    def list_dirs(self, rel: str) -> list[str]:
        p = self.path(rel)
        if self.fs.get_file_info(p).type != pafs.FileType.Directory:
            return []
        return sorted(i.path for i in self.fs.get_file_info(pafs.FileSelector(p)) if i.type == pafs.FileType.Directory)

    def list_files(self, rel: str, suffix: str = ".parquet") -> list[str]:
        p = self.path(rel)
        if self.fs.get_file_info(p).type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(p, recursive=True))
        # names starting with "." are temp files of other writers, never parts
        return sorted(i.path for i in infos if i.is_file and i.path.endswith(suffix) and not posixpath.basename(i.path).startswith("."))

    # -- parts, markers -------------------------------------------------------------------------

    def write_part(self, rel_dir: str, table: pa.Table, key_columns: tuple[str, ...], tmp_dir: str = "_tmp") -> str:
        """Publish ``table`` as one part of ``rel_dir``, named by a hash of its ``key_columns``
        (written first under ``tmp_dir``: a writer that cleans its own temp files gets its own)."""
        h = hashlib.sha256()
        for col in key_columns:
            arr = table.column(col)
            if pa.types.is_integer(arr.type):
                h.update(np.ascontiguousarray(arr.to_numpy()).astype(np.int64).tobytes())
            else:
                h.update("\n".join(sorted(str(v) for v in arr.to_pylist())).encode())
        return self.publish_table(posixpath.join(rel_dir, f"{PART_PREFIX}{h.hexdigest()[:24]}.parquet"), table, tmp_dir)

    def read_parts(self, rel_dir: str, columns: list[str] | None = None, what: str = "part") -> list[pa.Table]:
        """Every readable part file under ``rel_dir`` (recursively); unreadable ones are deleted."""
        tables = []
        for path in self.list_files(rel_dir):
            try:
                with self.fs.open_input_file(path) as f:
                    tables.append(pq.read_table(f, columns=columns))
            except (OSError, pa.ArrowException) as exc:
                log.warning("unreadable %s %s (%s): deleting it; its rows will be done again", what, path, exc)
                try:
                    self.fs.delete_file(path)
                except OSError:
                    pass
        return tables

    def is_done(self, rel_dir: str) -> bool:
        return self.exists(rel_dir, DONE_MARKER)

    def mark_done(self, rel_dir: str) -> None:
        self.publish_bytes(posixpath.join(rel_dir, DONE_MARKER), b"")

    def clean_temp(self, tmp_dir: str = "_tmp") -> int:
        """Remove temp files a killed writer left in ``tmp_dir``; returns how many. Only for a
        ``tmp_dir`` no other writer of the run is using at the time."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(tmp_dir), recursive=True, allow_not_found=True))
        stale = [i.path for i in infos if i.is_file]
        for p in stale:
            self.fs.delete_file(p)
        return len(stale)
