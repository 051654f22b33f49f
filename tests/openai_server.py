"""A small OpenAI-compatible HTTP server on 127.0.0.1 for testing the real LiteLLM path.

``/v1/chat/completions`` answers with a JSON object holding every field of the requested schema (values derived
from the prompt), unless told otherwise: ``rate_limit`` answers 429 to that many requests, ``slow`` delays that
many requests by ``delay`` seconds, ``invalid_for`` makes prompts containing any of its strings get a non-JSON
answer, ``reject_key`` answers 401 quoting the key. ``/v1/embeddings`` returns deterministic vectors. Every
request is logged with its Authorization header.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import serving

DIM = 8


def vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 for b in digest[:DIM]]


class FakeOpenAI:
    def __init__(self, model_name: str = "gpt-4o-mini") -> None:
        self.model_name = model_name
        self.rate_limit = 0
        self.slow = 0
        self.delay = 0.0
        self.invalid_for: tuple[str, ...] = ()
        self.reject_key = False  # answer 401 quoting the key it received, as some providers do
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    limited = server.rate_limit > 0
                    server.rate_limit -= limited
                    slow = server.slow > 0
                    server.slow -= slow
                if limited:
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit_error"}})
                if server.reject_key:
                    quoted = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    return self._send(
                        401,
                        {
                            "error": {
                                "message": f"Incorrect API key provided: {quoted}",
                                "type": "invalid_request_error",
                            }
                        },
                    )
                if slow:
                    time.sleep(server.delay)
                if self.path.endswith("/embeddings"):
                    data = [
                        {"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(body["input"])
                    ]
                    return self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "model": body["model"],
                            "usage": {"prompt_tokens": 3, "total_tokens": 3},
                        },
                    )
                prompt = json.dumps(body["messages"])
                if any(marker in prompt for marker in server.invalid_for):
                    content = "I cannot answer in JSON."
                else:
                    schema = body["response_format"]["json_schema"]["schema"]
                    tag = hashlib.sha256(prompt.encode()).hexdigest()[:8]
                    content = json.dumps({name: f"{name} text {tag}" for name in schema["properties"]})
                return self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": server.model_name,
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def count(self, path_part: str = "chat/completions") -> int:
        return sum(1 for r in self.requests if path_part in r["path"])

    def running(self):
        return serving(self.httpd, self)
