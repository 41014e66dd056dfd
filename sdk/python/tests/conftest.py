from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stubserver import StubServer, stub_binary  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    if not stub_binary().exists():
        raise pytest.UsageError(f"stub binary not found at {stub_binary()}: set STUB_BIN")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubServer]:
    """One real `stub serve` for the whole suite; each test makes its own root and agent."""
    instance = StubServer(tmp_path_factory.mktemp("stub")).start()
    try:
        yield instance
    finally:
        code = instance.stop()
        if code not in (0, None):
            pytest.fail(f"stub serve exited with {code}: "
                        f"{instance.log_path.read_text(errors='replace')[-3000:]}")
