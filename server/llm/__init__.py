"""LLM pre-annotation through any OpenAI-compatible server, trusted only after it is scored against gold (docs/llm.md).

provider.py      the chat-completions client: env config, timeouts, retries, backoff, concurrency, token budget, counts
prompt.py        the prompt from the labeling config: instruction, JSON schema, TF-IDF few-shot gold, prompt hash
align.py         answers → exact character offsets (whole words, no overlaps) and Label Studio result items
evaluate.py      `goldloop llm eval`: the test split scored like a model version, the gate, the version record, trust
cache.py         answers by (text hash, prompt hash, model) and posted tasks, in the data dir
label.py         `goldloop llm label`: the pool's predictions, resumable
local_server.py  a small OpenAI-compatible server around a GGUF instruct model (development and tests)
"""
