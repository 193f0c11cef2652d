"""A fake OpenAI-compatible chat endpoint for the judge tests: real HTTP on 127.0.0.1 (port 0), in a thread.

It answers POST /v1/chat/completions like a judge that reads the two replies out of our prompt and
applies runners.judges.rules.prefer_safe_then_shorter, so the right labels are known. `plan` makes the
next requests misbehave, in arrival order: "429", "500", "sleep" (answer after `sleep_s`, past the
client's timeout), "garbage" (a 200 whose answer text names no reply), "notjson" (a 200 whose body is
not JSON). Every request is recorded (path, body, Authorization header).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from runners.judges.rules import prefer_safe_then_shorter

REPLIES = re.compile(r"Reply A:\n(?P<a>.*?)\n\nReply B:\n(?P<b>.*?)\n\n(?:Which|Judged)", re.DOTALL)


class FakeJudgeServer:
    def __init__(self, sleep_s: float = 2.0) -> None:
        self.plan: list[str] = []
        self.requests: list[dict] = []
        self.sleep_s = sleep_s
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "authorization": self.headers.get("Authorization")})
                    action = server.plan.pop(0) if server.plan else "answer"
                if action in ("429", "500"):
                    self._send(int(action), {"error": {"message": "try again", "type": "server"}},
                               {"Retry-After": "0"} if action == "429" else {})
                    return
                if action == "sleep":
                    time.sleep(server.sleep_s)
                if action == "notjson":
                    self._raw(200, b"<html>oops</html>", "application/json")
                    return
                content = body["messages"][-1]["content"]
                text = "I would rather not say." if action == "garbage" else server.answer(content)
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102},
                })

            def _send(self, status, payload, headers=None):
                self._raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _raw(self, status, data, ctype, headers=None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def answer(content: str) -> str:
        match = REPLIES.search(content)
        if not match:
            return "?"
        winner = prefer_safe_then_shorter("", match["a"], match["b"])
        return {"first": "A", "second": "B", None: "tie"}[winner]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def __enter__(self) -> FakeJudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
