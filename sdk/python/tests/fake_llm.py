"""A local fake of the OpenAI and Anthropic HTTP APIs (127.0.0.1 only): realistic JSON bodies
and SSE streams with usage, as the official clients expect them. The request decides the
scenario: `user`/`metadata.user_id` "cut" ends a stream before its usage; model "refused"
answers 400."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

CHAT_USAGE = {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 20, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}}
RESPONSES_USAGE = {"input_tokens": 900, "output_tokens": 300, "total_tokens": 1200,
                   "input_tokens_details": {"cached_tokens": 512},
                   "output_tokens_details": {"reasoning_tokens": 128}}
EMBEDDINGS_USAGE = {"prompt_tokens": 17, "total_tokens": 17}
ANTHROPIC_USAGE = {"input_tokens": 25, "output_tokens": 97, "cache_read_input_tokens": 3000,
                   "cache_creation_input_tokens": 1500,
                   "cache_creation": {"ephemeral_5m_input_tokens": 1000,
                                      "ephemeral_1h_input_tokens": 500},
                   "service_tier": "standard"}


class FakeLlm:
    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLlm
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.fake.requests.append({"path": self.path, "body": body})
        if body.get("model") == "refused":
            return self._json(400, {"error": {"message": "bad request", "type": "invalid_request_error"}}
                              if not self.path.endswith("/messages") else
                              {"type": "error", "error": {"type": "invalid_request_error",
                                                          "message": "bad request"}})
        cut = body.get("user") == "cut" or (body.get("metadata") or {}).get("user_id") == "cut"
        if self.path.endswith("/chat/completions"):
            return self._chat(body, cut)
        if self.path.endswith("/responses"):
            return self._responses(body, cut)
        if self.path.endswith("/embeddings"):
            return self._json(200, {"object": "list", "model": body["model"], "usage": EMBEDDINGS_USAGE,
                                    "data": [{"object": "embedding", "index": 0,
                                              "embedding": [0.1, -0.2, 0.3]}]})
        if self.path.endswith("/messages"):
            return self._messages(body, cut)
        self._json(404, {"error": {"message": "no such route"}})

    # -- plumbing --------------------------------------------------------------------------

    def _json(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_fake_json")
        self.send_header("request-id", "req_fake_json")
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: List[Any], named: bool, done: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("x-request-id", "req_fake_stream")
        self.send_header("request-id", "req_fake_stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            prefix = f"event: {event['type']}\n" if named else ""
            self.wfile.write(f"{prefix}data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        if done:
            self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    # -- OpenAI ----------------------------------------------------------------------------

    def _chat(self, body: Dict[str, Any], cut: bool) -> None:
        base = {"id": "chatcmpl-fake1", "created": 1764547200, "model": body["model"] + "-2024-08-06"
                if body["model"] == "gpt-4o" else body["model"], "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            n = body.get("n") or 1
            return self._json(200, {**base, "object": "chat.completion", "usage": CHAT_USAGE,
                                    "choices": [{"index": i, "finish_reason": "stop", "logprobs": None,
                                                 "message": {"role": "assistant", "content": "Hello!",
                                                             "refusal": None}} for i in range(n)]})
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "usage": None, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "finish_reason": None, "logprobs": None}]},
            {**chunk, "usage": None, "choices": [{"index": 0, "delta": {"content": "Hel"},
                                                  "finish_reason": None, "logprobs": None}]},
            {**chunk, "usage": None, "choices": [{"index": 0, "delta": {"content": "lo!"},
                                                  "finish_reason": "stop", "logprobs": None}]},
        ]
        if cut:
            return self._sse(events[:2], named=False, done=False)
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": CHAT_USAGE})
        self._sse(events, named=False, done=True)

    def _responses(self, body: Dict[str, Any], cut: bool) -> None:
        response = {"id": "resp_fake1", "object": "response", "created_at": 1764547200,
                    "model": body["model"], "status": "completed", "output": [
                        {"type": "message", "id": "msg_fake1", "status": "completed", "role": "assistant",
                         "content": [{"type": "output_text", "text": "Hi there", "annotations": []}]}],
                    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                    "usage": RESPONSES_USAGE}
        if not body.get("stream"):
            return self._json(200, response)
        in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
        item = {"type": "message", "id": "msg_fake1", "status": "in_progress", "role": "assistant",
                "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        done_part = {"type": "output_text", "text": "Hi there", "annotations": []}
        events = [
            {"type": "response.created", "sequence_number": 0, "response": in_progress},
            {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
             "item": item},
            {"type": "response.content_part.added", "sequence_number": 2, "item_id": "msg_fake1",
             "output_index": 0, "content_index": 0, "part": part},
            {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_fake1",
             "output_index": 0, "content_index": 0, "delta": "Hi there", "logprobs": []},
            {"type": "response.output_text.done", "sequence_number": 4, "item_id": "msg_fake1",
             "output_index": 0, "content_index": 0, "text": "Hi there", "logprobs": []},
            {"type": "response.content_part.done", "sequence_number": 5, "item_id": "msg_fake1",
             "output_index": 0, "content_index": 0, "part": done_part},
            {"type": "response.output_item.done", "sequence_number": 6, "output_index": 0,
             "item": response["output"][0]},
            {"type": "response.completed", "sequence_number": 7, "response": response},
        ]
        self._sse(events[:4] if cut else events, named=True, done=False)

    # -- Anthropic ------------------------------------------------------------------------

    def _messages(self, body: Dict[str, Any], cut: bool) -> None:
        message = {"id": "msg_fake1", "type": "message", "role": "assistant", "model": body["model"],
                   "content": [{"type": "text", "text": "Hello from Claude"}],
                   "stop_reason": "end_turn", "stop_sequence": None, "usage": ANTHROPIC_USAGE}
        if not body.get("stream"):
            return self._json(200, message)
        start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
        events = [
            {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                  "usage": start_usage}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": " from Claude"}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}},
            {"type": "message_stop"},
        ]
        self._sse(events[:3] if cut else events, named=True, done=False)
