"""A loopback S3 (moto's threaded server) for tests, with fake AWS credentials.

Usage::

    from tests.support.s3 import FAKE_AWS_ENV, moto_s3  # noqa: F401  (moto_s3 is a fixture)

    def test_x(moto_s3):
        moto_s3.client.create_bucket(Bucket="bucket")
        cfg = ... {"storage": {"s3_endpoint": moto_s3.endpoint}} ...

The server listens on 127.0.0.1 at a free port, in a thread of the test process; nothing leaves
the machine. ``FAKE_AWS_ENV`` holds dummy credentials, a region and
``AWS_EC2_METADATA_DISABLED=true`` so no SDK tries the instance metadata service.

Ray workers inherit the environment of the raylet, i.e. of the driver *at* ``ray.init`` time;
an embedded Ray started earlier in the session (the ``ray_local`` fixture) would not see
credentials set later, and its workers' AWS SDK would walk the credential chain on its own.
:func:`use_fake_aws_env` therefore puts ``FAKE_AWS_ENV`` into ``os.environ`` and is called when a
test module that needs S3 is imported, i.e. during collection, before any test starts Ray.
The endpoint itself travels with the job config (``storage.s3_endpoint``), not the environment.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE_AWS_ENV = {
    # distinctive values, so a test can grep every output for them (moto accepts any credentials)
    "AWS_ACCESS_KEY_ID": "AKIAFAKEAFFALIGN0001",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-affalign-7c1e9b3d",
    "AWS_SESSION_TOKEN": "fake-session-affalign-52aa",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# variables that would point an SDK elsewhere (a real profile, a real endpoint)
_CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def use_fake_aws_env() -> None:
    """Put the fake credentials into ``os.environ`` (see the module docstring for why so early)."""
    for key in _CLEARED:
        os.environ.pop(key, None)
    os.environ.update(FAKE_AWS_ENV)


def subprocess_env(**extra: str) -> dict[str, str]:
    """An environment for a child process that talks to the moto server only."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(FAKE_AWS_ENV)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MotoS3:
    endpoint: str  # http://127.0.0.1:PORT
    server: Any

    @property
    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=FAKE_AWS_ENV["AWS_DEFAULT_REGION"])

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under a prefix (paginated)."""
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def upload_dir(self, local: Path, bucket: str, prefix: str) -> list[str]:
        """Upload every file under ``local`` to ``s3://bucket/prefix/...``; returns the keys."""
        keys = []
        client = self.client
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
            client.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys


def start_moto() -> MotoS3:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return MotoS3(endpoint=f"http://{host}:{port}", server=server)


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server for a test module, with the fake credentials in the environment."""
    saved = {k: os.environ.get(k) for k in (*FAKE_AWS_ENV, *_CLEARED)}
    use_fake_aws_env()
    s3 = start_moto()
    try:
        yield s3
    finally:
        s3.server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
