"""A Redis server of the test's own, on a free loopback port, so real processes (whose dramatiq
namespace is fixed) can share nothing with other tests or other runs on the same machine."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.e2e.procs import wait_until
from tests.ports import free_port


def run_private_redis(folder: Path, *, tls: bool = False) -> Iterator[str]:
    """Yields its URL; with ``tls`` it listens only for TLS (``rediss://``) with a self-signed certificate,
    as Heroku Redis does."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    listen = ["--port", "0", "--tls-port", str(port), *_self_signed(folder)] if tls else ["--port", str(port)]
    proc = subprocess.Popen(
        [server, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, **({"ssl_cert_reqs": None} if tls else {}))

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    try:
        wait_until(answers, timeout=10, what="the private redis-server answering")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def _self_signed(folder: Path) -> list[str]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=redis.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-auth-clients", "no"]
