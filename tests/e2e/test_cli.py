"""The `stub` CLI against the real server: the tour's commands print what they promise."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading

from stubclient import StubServer, stub_binary


def run_cli(server: StubServer, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, STUB_URL=f"http://127.0.0.1:{server.port}",
               STUB_TOKEN=token or server.admin_token)
    return subprocess.run([str(stub_binary()), *args], env=env, capture_output=True, text=True,
                          timeout=30)


def test_budget_tree_spend_and_denial_exit_codes(fresh_server: StubServer) -> None:
    assert run_cli(fresh_server, "budget", "set", "cli", "--limit", "5").returncode == 0
    assert run_cli(fresh_server, "budget", "set", "cli/team", "--limit", "2").returncode == 0
    spent = run_cli(fresh_server, "spend", "1.25", "--budget", "cli/team", "--vendor", "v")
    assert spent.returncode == 0, spent.stderr
    assert json.loads(spent.stdout)["status"] == "captured"
    denied = run_cli(fresh_server, "spend", "1.00", "--budget", "cli/team")
    assert denied.returncode == 2
    assert '"budget_exceeded"' in denied.stderr
    tree = run_cli(fresh_server, "budget", "tree", "cli")
    assert tree.returncode == 0
    assert tree.stdout.splitlines() == [
        "cli  spent 1.25 + reserved 0.00 of 5.00 / month",
        "  team  spent 1.25 + reserved 0.00 of 2.00 / month",
    ]


def test_ledger_tail_follows_commits_as_they_happen(fresh_server: StubServer) -> None:
    assert run_cli(fresh_server, "budget", "set", "tail", "--limit", "5").returncode == 0
    env = dict(os.environ, STUB_URL=f"http://127.0.0.1:{fresh_server.port}",
               STUB_TOKEN=fresh_server.admin_token)
    tail = subprocess.Popen([str(stub_binary()), "ledger", "tail", "--root", "tail", "--after", "0",
                             "--json"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert run_cli(fresh_server, "spend", "0.50", "--budget", "tail").returncode == 0
        # A reader thread, since a buffered pipe hides lines from select().
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout], daemon=True).start()
        kinds = [json.loads(lines.get(timeout=10))["kind"] for _ in range(2)]
        assert kinds == ["budget_set", "spend"]
    finally:
        tail.kill()
        tail.wait()
