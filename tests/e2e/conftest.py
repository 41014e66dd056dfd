"""Fixtures for the end-to-end suite: a fresh `stub serve` per test module (or per test where a
test needs the server to itself), on a temporary directory, stopped at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stubclient import StubServer, stub_binary  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    binary = stub_binary()
    if not binary.exists():
        raise pytest.UsageError(
            f"stub binary not found at {binary}: build it "
            "(cmake --build build/release --target stub) or set STUB_BIN"
        )


def _start(workdir: Path):
    server = StubServer(workdir).start()
    try:
        yield server
    finally:
        code = server.stop()
        # A crash (e.g. an assertion or a signal) must not pass unnoticed.
        if code not in (0, None):
            log = server.log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"stub serve exited with {code}:\n{log}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One server per test module."""
    yield from _start(tmp_path_factory.mktemp("stub"))


@pytest.fixture
def fresh_server(tmp_path: Path):
    """A server for one test alone."""
    yield from _start(tmp_path / "server")


@pytest.fixture(scope="module")
def admin(server: StubServer):
    client = server.client()
    yield client
    client.close()
