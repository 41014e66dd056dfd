"""A key revoked or expired while it waits is cut off within 2 s: an event stream (SSE) ends
with an error event and closes, and a long poll of a pending hold answers 401 key_not_usable
instead of waiting out its ?wait=. Many long polls on one server wake only for their own hold."""

from __future__ import annotations

import http.client
import threading
import time

from stubclient import Client, new_key, parse_ts

ROOT = "cut"
CUTOFF_SECONDS = 2.0


def open_stream(port: int, token: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b":")  # subscribed
    return conn, response


def read_until_closed(response: http.client.HTTPResponse) -> list[str]:
    lines = []
    while True:
        line = response.readline()
        if not line:
            return lines
        lines.append(line.decode().rstrip("\r\n"))


def test_event_stream_of_a_revoked_key_closes_within_two_seconds(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/agent", "10.00")
    key = admin.create_key(f"{ROOT}/agent", name="streamer")
    conn, response = open_stream(server.port, key["key"])
    try:
        revoked_at = time.monotonic()
        assert admin.delete(f"/v1/keys/{key['id']}").status == 200
        lines = read_until_closed(response)
        elapsed = time.monotonic() - revoked_at
    finally:
        conn.close()
    assert elapsed < CUTOFF_SECONDS, f"the stream stayed open {elapsed:.2f} s after the revoke"
    assert "event: error" in lines, lines
    assert any("key_not_usable" in line for line in lines), lines


def test_event_stream_of_an_expiring_key_closes_within_two_seconds(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/brief", "10.00")
    key = admin.create_key(f"{ROOT}/brief", name="brief", expires_in="2s")
    expires = parse_ts(key["expires_at"])
    conn, response = open_stream(server.port, key["key"])
    try:
        lines = read_until_closed(response)
        late = time.time() - expires
    finally:
        conn.close()
    assert late < CUTOFF_SECONDS, f"the stream outlived its key by {late:.2f} s"
    assert any("key_not_usable" in line for line in lines), lines


def test_long_poll_of_a_revoked_key_answers_401_within_two_seconds(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.ok("PUT", f"/v1/budgets/{ROOT}/asker", {"limit": "10.00", "approval_above": "1.00"})
    key = admin.create_key(f"{ROOT}/asker", name="asker")
    agent = Client(server.port, key["key"])
    pending = agent.post("/v1/holds", {"amount": "5.00", "vendor": "v", "ttl": "5m"}, idem=new_key())
    assert pending.status == 202, pending
    result: dict = {}
    started = threading.Event()

    def poll() -> None:
        started.set()
        result["reply"] = Client(server.port, key["key"]).get(f"/v1/holds/{pending.json['id']}?wait=30s")
        result["done"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    started.wait()
    time.sleep(0.3)  # the poll is waiting; its answer must come from the revoke
    revoked_at = time.monotonic()
    assert admin.delete(f"/v1/keys/{key['id']}").status == 200
    poller.join(10)
    assert not poller.is_alive(), "the long poll did not end after the revoke"
    assert result["done"] - revoked_at < CUTOFF_SECONDS
    assert result["reply"].status == 401 and result["reply"].error_code == "key_not_usable", result


def test_many_long_polls_each_wake_for_their_own_hold(server, admin):
    """Fifty agents wait on fifty pending holds; approving one wakes exactly that one at once."""
    admin.put_budget(ROOT, "1000.00")
    admin.ok("PUT", f"/v1/budgets/{ROOT}/fleet", {"limit": "500.00", "approval_above": "1.00"})
    key = admin.create_key(f"{ROOT}/fleet", name="fleet")["key"]
    agent = Client(server.port, key)
    holds = []
    for _ in range(50):
        reply = agent.post("/v1/holds", {"amount": "2.00", "ttl": "5m"}, idem=new_key())
        assert reply.status == 202, reply
        holds.append(reply.json["id"])
    answers: dict[str, tuple[int, float]] = {}
    lock = threading.Lock()

    def poll(hold_id: str) -> None:
        reply = Client(server.port, key).get(f"/v1/holds/{hold_id}?wait=4s")
        with lock:
            answers[hold_id] = (reply.status, time.monotonic(), reply.json["status"])

    threads = [threading.Thread(target=poll, args=(h,)) for h in holds]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    chosen = holds[17]
    approved_at = time.monotonic()
    assert admin.post(f"/v1/holds/{chosen}/approve", {}, idem=new_key()).status == 200
    for thread in threads:
        thread.join(15)
    status, done, state = answers[chosen]
    assert status == 200 and state == "held"
    assert done - approved_at < 1.5, "the approved hold's poll did not wake on its decision"
    for hold_id in holds:
        if hold_id != chosen:
            status, done, state = answers[hold_id]
            assert status == 200 and state == "pending_approval"
            assert done - approved_at > 2.5, "a poll woke for another hold's decision"
