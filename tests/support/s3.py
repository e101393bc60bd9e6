"""A real S3-speaking server for tests: ``moto_server`` on a loopback port, in its own process group."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import BIN, free_port, start, stop, wait_http

#: Credentials moto accepts (it checks none); real ones never appear in tests.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs: pyarrow and boto3 read ``AWS_ENDPOINT_URL``, MLflow also
        ``MLFLOW_S3_ENDPOINT_URL``."""
        return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def create_buckets(self, *names: str) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        for name in names:
            s3.create_bucket(Bucket=name)

    def get(self, bucket: str, key: str) -> bytes:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` in ``bucket``."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@contextlib.contextmanager
def moto_s3(workdir: Path) -> Iterator[S3Server]:
    """``moto_server`` on 127.0.0.1 for the block; stopped by its process group id."""
    port = free_port()
    log = workdir / "moto.log"
    proc = start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], {"PATH": str(BIN)}, log)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{endpoint}/moto-api/", proc, log, timeout_s=60)
        yield S3Server(endpoint)
    finally:
        stop(proc)
