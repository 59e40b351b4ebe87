"""int8 serving through ONNX Runtime: the fine-tuned model exported to ONNX, its transformer blocks fused
(attention, bias+GELU, skip+LayerNorm: ORT's BERT optimizer), the encoder's MatMuls and attention
quantized (int8 weights per output channel, activations quantized on the fly per batch), run by ORT's CPU
kernels. Embeddings and the task head stay fp32 (no compute to save there, and the most sensitive layers).

This is the CPU serving path on every machine: the graph is traced from a CPU copy of the model and runs on
ORT's CPU execution provider, also when the model trained on CUDA (``--device``); on a GPU, serve with
``quantize none`` (fp16/bf16 autocast) or ``bf16`` instead. ORT's CUDA execution provider is not used: it has
not been measured against those.

Measured against PyTorch's ``quantize_dynamic`` on the same fine-tuned NCBI model (bench/predict_throughput.py):
faster (fused attention, int8 attention projections), and per-channel weights keep entity F1 within half a
point of fp32 where per-tensor weights lost several points.

The quantized graph is built once per model (about 15 s on 2 cores) and cached next to a saved model
(``<model dir>/onnx/``, keyed by a fingerprint of the weights and the build recipe) so a restart or a second
process loads it directly; a model that was never saved is quantized into memory only.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import types
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OPSET = 17
# how a graph is built (export, fusion, quantization settings): part of the cache key, so a changed recipe
# or ONNX Runtime never reuses an older graph
RECIPE = "eager-trace/bert-fusion/int8-per-channel/embeddings+head-fp32/v1"
_BUILD_LOCK = threading.Lock()


def weights_fingerprint(model) -> str:
    """sha256 (16 hex) over every parameter and buffer, the pooling, the build recipe and ORT's version: a cache key."""
    import onnxruntime

    pooling = getattr(model, "goldloop_pooling", "model")  # hf.use_mean_pooling changes the traced graph, not the weights
    h = hashlib.sha256(f"{RECIPE}|opset {OPSET}|onnxruntime {onnxruntime.__version__}|pooling {pooling}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def export_onnx(model, path: Path) -> None:
    """Trace forward(input_ids, attention_mask) -> logits to ONNX (batch and length dynamic).

    Traced from a copy with eager attention: the graph the BERT fusion recognises (SDPA traces differently).
    """
    import copy

    import torch

    model = copy.deepcopy(model).cpu().eval()  # traced on the CPU, whatever device the model trains on
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError) as exc:  # an architecture without the switch: trace it as it is
        log.info("tracing with the model's own attention (%s)", exc)
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    logits_axes = {0: "batch", 1: "tokens"} if _per_token(model) else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={**axes, "logits": logits_axes}, opset_version=OPSET, dynamo=False,
        )


def _per_token(model) -> bool:
    return "TokenClassification" in type(model).__name__


def fuse(src: Path, dst: Path, config) -> bool:
    """ORT's transformer fusion (attention, bias+GELU, skip+LayerNorm); False (dst untouched) when it fails."""
    from onnxruntime.transformers import optimizer

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimizer.optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden)
        opt.save_model_to_file(str(dst))
    except Exception as exc:  # noqa: BLE001 - any optimizer failure: serve the unfused graph, which is correct
        log.warning("ONNX fusion failed for %s (%s); quantizing the unfused graph", type(config).__name__, exc)
        return False
    return True


def kept_fp32(onnx_path: Path) -> list[str]:
    """Nodes left in fp32: embeddings and every MatMul/Gemm outside the encoder (the task head, a pooler)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [
        n.name for n in graph.node
        if n.op_type == "EmbedLayerNormalization" or (n.op_type in ("MatMul", "Gemm") and "/encoder/" not in n.name)
    ]


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization: int8 weights per output channel, activations quantized per batch."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().disabled, was = True, logging.getLogger().disabled  # it warns about pre-processing
    try:
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=kept_fp32(src),
            # fused ops (Attention, BiasGelu) are outside ONNX shape inference: their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().disabled = was


def build_int8(model, dst: Path) -> None:
    """Export, fuse and quantize `model` into `dst` (written whole or not at all)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".goldloop-onnx-", dir=dst.parent) as tmp:
        traced, fused, part = Path(tmp) / "traced.onnx", Path(tmp) / "fused.onnx", Path(tmp) / dst.name
        export_onnx(model, traced)
        quantize_int8(fused if fuse(traced, fused, model.config) else traced, part)
        os.replace(part, dst)


class OrtModel:
    """Callable like a Hugging Face model for inference: ``model(input_ids=, attention_mask=).logits``.

    ONNX Runtime sessions are safe to call from several threads at once.
    """

    def __init__(self, path_or_bytes: Path | bytes, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between requests: the training round shares these cores
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
        self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids, attention_mask) -> Any:
        import torch

        (logits,) = self.session.run(
            ["logits"], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        )
        return types.SimpleNamespace(logits=torch.from_numpy(logits))


def cached_int8_path(model, cache_dir: Path) -> Path:
    """The int8 graph of `model` under `cache_dir`, built there first when missing (OSError if unwritable)."""
    cached = Path(cache_dir) / f"model-int8-{weights_fingerprint(model)}.onnx"
    with _BUILD_LOCK:
        if not cached.exists():
            build_int8(model, cached)
    return cached


def ort_int8_model(model, threads: int, cache_dir: Path | None = None) -> OrtModel:
    """The int8 ONNX Runtime twin of `model`, from the cache under `cache_dir` when it was built before."""
    if cache_dir is not None:
        try:
            return OrtModel(cached_int8_path(model, cache_dir), threads)
        except OSError as exc:  # a read-only model dir: build in memory instead
            log.warning("cannot cache the int8 graph in %s (%s); building it in memory", cache_dir, exc)
    with tempfile.TemporaryDirectory(prefix="goldloop-onnx-") as tmp:
        path = Path(tmp) / "model-int8.onnx"
        with _BUILD_LOCK:
            build_int8(model, path)
        return OrtModel(path.read_bytes(), threads)
