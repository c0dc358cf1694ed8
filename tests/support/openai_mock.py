#!/usr/bin/env python3
"""A MOCK of an OpenAI-compatible model server (what Ollama and vLLM serve), for the query
plugin's tests: no model can run on the test machines, so this stands in for one.

  POST /v1/embeddings        {"model", "input": str | [str]} -> one vector per input: a
                             bag of words hashed into 64 dimensions (crc32 of each lower-case
                             word; "<*>" left out), so texts sharing words are near and the
                             ranking a test expects is checkable.
  POST /v1/chat/completions  {"model", "messages"} -> an answer that quotes the size and the
                             first line of the user message; the last request is kept.
  POST /control              {"mode": "ok" | "hang" | "fail"}: hang holds every model request
                             until the mode changes (or 600 s pass); fail answers 500.
  GET  /stats                {"embeddings": n, "chat": n, "inputs": n, "hung": n,
                              "last_chat": <the last chat request>,
                              "authorization": <the last model request's header>}

Usage: openai_mock.py PORT
"""
import json
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIMS = 64
lock = threading.Lock()
state = {"mode": "ok", "embeddings": 0, "chat": 0, "inputs": 0, "hung": 0, "last_chat": None,
         "authorization": None}


def vector(text):
    v = [0.0] * DIMS
    word = []
    for ch in text.lower() + " ":
        if ch.isalnum():
            word.append(ch)
            continue
        if word:
            v[zlib.crc32("".join(word).encode()) % DIMS] += 1.0
            word = []
    return v


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        if self.path == "/stats":
            with lock:
                self.answer(200, {k: v for k, v in state.items()})
        else:
            self.answer(404, {"error": "not found"})

    def model_mode(self):
        with lock:
            mode = state["mode"]
            if mode == "hang":
                state["hung"] += 1
        if mode == "hang":
            deadline = time.time() + 600
            while time.time() < deadline:
                with lock:
                    if state["mode"] != "hang":
                        break
                time.sleep(0.05)
            return "hang"
        return mode

    def do_POST(self):
        try:
            req = self.read_json()
        except ValueError:
            return self.answer(400, {"error": "not JSON"})
        if self.path != "/control":
            with lock:
                state["authorization"] = self.headers.get("Authorization")
        if self.path == "/control":
            with lock:
                state["mode"] = req.get("mode", "ok")
            return self.answer(200, {"mode": state["mode"]})
        if self.path == "/v1/embeddings":
            inputs = req.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs
            with lock:
                state["embeddings"] += 1
            if self.model_mode() == "fail":
                return self.answer(500, {"error": "mock failure"})
            with lock:
                state["inputs"] += len(inputs)
            data = [{"object": "embedding", "index": i, "embedding": vector(t)}
                    for i, t in enumerate(inputs)]
            return self.answer(200, {"object": "list", "data": data, "model": req.get("model")})
        if self.path == "/v1/chat/completions":
            with lock:
                state["chat"] += 1
                state["last_chat"] = req
            if self.model_mode() == "fail":
                return self.answer(500, {"error": "mock failure"})
            user = next((m["content"] for m in req.get("messages", []) if m["role"] == "user"), "")
            first = user.splitlines()[0] if user else ""
            content = "MOCK ANSWER: %d bytes of evidence; it begins: %s" % (len(user), first)
            return self.answer(200, {
                "object": "chat.completion", "model": req.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}]})
        self.answer(404, {"error": "not found"})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
