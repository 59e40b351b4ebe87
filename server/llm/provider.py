"""The OpenAI-compatible chat-completions client: one request per document, bounded in every direction.

Any server that speaks ``POST {base}/chat/completions`` works (vLLM, Ollama, llama.cpp's server, a hosted API,
server/llm/local_server.py). What a run may cost is bounded: a timeout per request, at most ``retries`` waits on
429/5xx/unreachable (exponential, capped, Retry-After honoured up to the cap), one retry of a malformed answer,
``concurrency`` requests in flight, a token budget per run. A document that cannot be answered is dropped with a
counted reason, never fatal; only a refused API key (401/403) stops the run, since every request would fail alike.
The API key goes into the Authorization header and nowhere else: not in a log line, a record, an error or a repr.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import requests

from ..config import ENV_LLM_API_KEY, ENV_LLM_MODEL, ENV_LLM_URL
from ..errors import ServerError
from ..score import parse_answer

log = logging.getLogger(__name__)


class LLMError(ServerError):
    """The LLM server cannot be used for this run (not configured, key refused, not trusted)."""


@dataclass(frozen=True)
class LLMConfig:
    """Where the server is and how much one run may ask of it."""

    url: str  # base URL up to and including /v1, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str = field(default="", repr=False)
    timeout: float = 120.0  # seconds per request (connect + read)
    max_tokens: int = 512  # completion tokens per answer
    temperature: float = 0.0  # greedy: the same prompt gives the same answer, so caching and scoring mean something
    concurrency: int = 4
    token_budget: int = 0  # prompt + completion tokens per run; 0: no limit
    retries: int = 3  # waits on 429 / 5xx / connection errors before a document is dropped
    backoff: float = 1.0  # first wait (seconds), doubled each retry
    backoff_max: float = 20.0

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides: Any) -> "LLMConfig":
        """The server from GOLDLOOP_LLM_URL / GOLDLOOP_LLM_MODEL / GOLDLOOP_LLM_API_KEY, options on top."""
        import os

        env = os.environ if environ is None else environ
        url = overrides.pop("url", None) or env.get(ENV_LLM_URL, "")
        model = overrides.pop("model", None) or env.get(ENV_LLM_MODEL, "")
        key = overrides.pop("api_key", None) or env.get(ENV_LLM_API_KEY, "")
        if not url:
            raise LLMError(f"no LLM server: set {ENV_LLM_URL} (e.g. http://127.0.0.1:8000/v1) or pass --url")
        if not model:
            raise LLMError(f"no LLM model: set {ENV_LLM_MODEL} or pass --model")
        if not url.startswith(("http://", "https://")):
            raise LLMError(f"{ENV_LLM_URL} must start with http:// or https://, got {url[:60]!r}")
        return cls(url=url.rstrip("/"), model=model, api_key=key, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class RunStats:
    """What one run asked and got: the counts every run reports."""

    asked: int = 0  # documents sent (a retry of the same document is not a new ask)
    answered: int = 0  # documents with a usable JSON object
    malformed: int = 0  # answers that were not a JSON object (each retried once)
    dropped: int = 0  # documents left without an answer
    reasons: Counter = field(default_factory=Counter)  # why documents were dropped
    requests: int = 0  # HTTP requests, retries included
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"asked": self.asked, "answered": self.answered, "malformed": self.malformed, "dropped": self.dropped,
                "dropped_reasons": dict(self.reasons), "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 2)}


class _Retryable(Exception):
    """A request that may succeed later (429, 5xx, connection refused, timeout); ``reason`` names it."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.wait = reason, wait


class _Dropped(Exception):
    """A request that will not succeed by asking again (a 4xx other than 401/403/429)."""


class Provider:
    """A chat-completions client for one model; ``ask_many`` runs a batch of prompts under the run's bounds."""

    def __init__(self, config: LLMConfig, session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.stats = RunStats()
        self._session = session or requests.Session()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._schema_refused = False  # the server answered 400 to response_format: the schema stays in the prompt only

    def __repr__(self) -> str:  # the key never shows, even in a debugger
        return f"Provider(url={self.config.url!r}, model={self.config.model!r})"

    # -- one request ------------------------------------------------------------------------------------------------

    def _headers(self) -> dict:
        h = {"Content-Type": "application/json"}
        if self.config.api_key:
            h["Authorization"] = f"Bearer {self.config.api_key}"
        return h

    def _post(self, messages: list[dict], schema: dict | None) -> str:
        """One HTTP request; the assistant's text. Raises _Retryable, _Dropped or LLMError."""
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if schema is not None and not self._schema_refused:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        with self._lock:
            self.stats.requests += 1
        try:
            resp = self._session.post(f"{cfg.url}/chat/completions", json=body, headers=self._headers(), timeout=cfg.timeout)
        except requests.Timeout:
            raise _Retryable("timeout") from None
        except requests.ConnectionError:
            raise _Retryable("unreachable") from None
        if resp.status_code in (401, 403):
            raise LLMError(f"the LLM server at {cfg.url} refused the API key (HTTP {resp.status_code}); check {ENV_LLM_API_KEY}")
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"http_{resp.status_code}", _retry_after(resp))
        if resp.status_code == 400 and "response_format" in body and not self._schema_refused:
            # servers that know no json_schema answer 400: ask again with the schema in the prompt alone
            self._schema_refused = True
            log.info("LLM server refused response_format (HTTP 400): the JSON schema is sent in the prompt only")
            return self._post(messages, schema)
        if resp.status_code >= 400:
            raise _Dropped(f"http_{resp.status_code}")
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Dropped("bad_response") from None
        usage = data.get("usage") or {}
        with self._lock:
            self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        return text

    def _post_with_backoff(self, messages: list[dict], schema: dict | None) -> str:
        cfg = self.config
        for attempt in range(cfg.retries + 1):
            try:
                return self._post(messages, schema)
            except _Retryable as exc:
                if attempt == cfg.retries:
                    raise _Dropped(exc.reason) from None
                wait = min(cfg.backoff_max, exc.wait if exc.wait is not None else cfg.backoff * 2 ** attempt)
                log.info("LLM request: %s, retrying in %.1f s", exc.reason, wait)
                self._sleep(wait)
        raise _Dropped("retries")  # not reached: the loop returns or raises

    def _over_budget(self) -> bool:
        budget = self.config.token_budget
        return budget > 0 and self.stats.prompt_tokens + self.stats.completion_tokens >= budget

    def ask(self, messages: list[dict], schema: dict | None = None) -> dict | None:
        """The JSON answer object to one prompt, or None (dropped, with its reason counted)."""
        with self._lock:
            self.stats.asked += 1
        try:
            for attempt in range(2):  # a malformed answer is asked once more, then dropped
                if self._over_budget():
                    raise _Dropped("token_budget")
                answer = parse_answer(self._post_with_backoff(messages, schema))
                if answer is not None:
                    with self._lock:
                        self.stats.answered += 1
                    return answer
                with self._lock:
                    self.stats.malformed += 1
            raise _Dropped("malformed")
        except _Dropped as exc:
            with self._lock:
                self.stats.dropped += 1
                self.stats.reasons[str(exc)] += 1
            return None

    def ask_many(self, prompts: Iterable[tuple[Any, list[dict]]], schema: dict | None = None,
                 on_answer: Callable[[Any, dict | None], None] | None = None) -> dict[Any, dict | None]:
        """Answers by key for (key, messages) pairs, ``concurrency`` at a time; ``on_answer(key, answer)`` runs as each
        arrives (in the caller's thread), so a caller can store it before the next one: a kill loses nothing."""
        started = time.monotonic()
        out: dict[Any, dict | None] = {}
        items = list(prompts)
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
                futures = [(key, pool.submit(self.ask, messages, schema)) for key, messages in items]
                for key, fut in futures:
                    out[key] = fut.result()
                    if on_answer is not None:
                        on_answer(key, out[key])
        finally:
            self.stats.seconds += time.monotonic() - started
        return out

    def models(self) -> list[str]:
        """The model ids the server lists (GET /models): a reachability check."""
        try:
            resp = self._session.get(f"{self.config.url}/models", headers=self._headers(), timeout=min(10.0, self.config.timeout))
        except requests.RequestException as exc:
            raise LLMError(f"the LLM server at {self.config.url} is not reachable: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise LLMError(f"the LLM server at {self.config.url} refused the API key (HTTP {resp.status_code}); check {ENV_LLM_API_KEY}")
        try:
            return [m["id"] for m in resp.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            return []


def _retry_after(resp: requests.Response) -> float | None:
    """Seconds a 429/503 asks us to wait (Retry-After in seconds), or None."""
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None

