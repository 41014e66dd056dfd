"""Server-Sent Events: each committed entry arrives on GET /v1/events as it commits."""

from __future__ import annotations

import http.client
import json
import threading

from stubclient import entry_hash, new_key

ROOT = "sse"
READ_TIMEOUT = 10.0  # seconds one blocking read may take before the test gives up


class EventReader(threading.Thread):
    """Reads an SSE stream until `want` entry events matched `kind` or the stream stalls."""

    def __init__(self, port: int, path: str, token: str, want: int):
        super().__init__(daemon=True)
        self.port, self.path, self.token, self.want = port, path, token, want
        self.subscribed = threading.Event()
        self.status: int | None = None
        self.events: list[dict] = []
        self.error: BaseException | None = None
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        try:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=READ_TIMEOUT)
            self.conn.request("GET", self.path, headers={"Authorization": f"Bearer {self.token}",
                                                         "Accept": "text/event-stream"})
            response = self.conn.getresponse()
            self.status = response.status
            if response.status != 200:
                return
            # The server subscribes before it sends its first comment line, so once that line
            # is read nothing committed afterwards can be missed.
            first = response.readline()
            assert first.startswith(b":"), first
            self.subscribed.set()
            fields: dict[str, str] = {}
            while len(self.events) < self.want:
                line = response.readline()  # bounded by the socket timeout
                if not line:
                    return
                line = line.rstrip(b"\r\n").decode()
                if line == "":
                    if "data" in fields:
                        self.events.append({"id": fields.get("id"), "event": fields.get("event"),
                                            "data": json.loads(fields["data"])})
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except BaseException as error:  # reported to the test
            self.error = error
        finally:
            self.subscribed.set()
            if self.conn is not None:
                self.conn.close()


def test_three_spends_arrive_as_three_consecutive_events(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/agent", "10.00")
    token = admin.create_key(f"{ROOT}/agent")["key"]
    agent = server.client(token)

    reader = EventReader(server.port, f"/v1/events?root={ROOT}", server.admin_token, want=3)
    reader.start()
    assert reader.subscribed.wait(READ_TIMEOUT), "the stream never opened"
    assert reader.status == 200 and reader.error is None, (reader.status, reader.error)

    answers = []
    for i in range(3):
        reply = agent.post("/v1/spends", {"amount": f"0.{i + 1}0", "vendor": "openai",
                                          "intent": f"event {i}"}, idem=new_key())
        assert reply.status == 201, reply
        answers.append(reply.json)

    reader.join(READ_TIMEOUT * 2)
    assert not reader.is_alive(), "events did not arrive"
    assert reader.error is None, reader.error
    seen = [(e["data"].get("seq"), e["data"].get("kind")) for e in reader.events]
    assert len(reader.events) == 3, seen
    seqs = [event["data"]["seq"] for event in reader.events]
    assert seqs == [answers[0]["seq"], answers[0]["seq"] + 1, answers[0]["seq"] + 2], (seen, answers)
    assert seqs == [answer["seq"] for answer in answers], (seen, answers)
    for event, answer in zip(reader.events, answers):
        entry = event["data"]
        assert event["event"] == "entry"
        assert event["id"] == f"{ROOT}:{entry['seq']}"
        assert entry["kind"] == "spend"
        assert entry["hold_id"] == answer["id"] and entry["amount"] == answer["amount"]
        assert entry_hash(entry) == entry["hash"]
    # The events are the entries the API serves.
    served = {e["seq"]: e for e in admin.entries(ROOT)}
    assert [served[s] for s in seqs] == [event["data"] for event in reader.events]


def test_events_of_another_root_are_forbidden_to_a_key(server, admin):
    admin.put_budget("sse-other", "1.00")
    token = admin.create_key(f"{ROOT}/agent")["key"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=READ_TIMEOUT)
    try:
        conn.request("GET", "/v1/events?root=sse-other", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        assert response.status == 403
        assert json.loads(response.read())["error"]["code"] == "outside_key_subtree"
    finally:
        conn.close()


def test_events_resume_after_a_seq(server, admin):
    """?after=SEQ replays the backlog first (what a reconnecting client needs)."""
    head = admin.ok("GET", f"/v1/entries?root={ROOT}&limit=1000")["next_after"]
    assert head >= 3
    reader = EventReader(server.port, f"/v1/events?root={ROOT}&after={head - 3}",
                         server.admin_token, want=3)
    reader.start()
    reader.join(READ_TIMEOUT * 2)
    assert not reader.is_alive() and reader.error is None, reader.error
    assert [e["data"]["seq"] for e in reader.events] == [head - 2, head - 1, head]
