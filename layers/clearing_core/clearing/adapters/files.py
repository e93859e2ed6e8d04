"""Settlement-file sinks (ports.SettlementFileSink): a local folder, or an S3 bucket in AWS."""

from __future__ import annotations

from pathlib import Path


class DirectorySink:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def write(self, name: str, content: bytes) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        path.write_bytes(content)
        return str(path)


class S3Sink:
    """PutObject into the settlement bucket (SSE with the bucket's default KMS key)."""

    def __init__(self, s3_client, bucket: str, prefix: str = ""):
        self.s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix

    def write(self, name: str, content: bytes) -> str:
        key = f"{self.prefix}{name}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=content)
        return f"s3://{self.bucket}/{key}"
