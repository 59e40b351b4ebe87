"""The device choice (models/torch_utils.py: resolve_device and the process's device) and what follows it: models,
fine-tuning, saving and loading, /health and /metrics, the CLI's --device; the process's precision (auto, bf16
autocast on the CPU, fp32). On this CPU, ``auto`` must change nothing; the tests marked ``gpu`` need CUDA
(``pytest -m gpu``) and skip without it."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from ml_backend import create_app
from ml_backend.models import Examples, SequenceClassifier, TokenClassifier, load_model
from ml_backend.models.torch_utils import (amp_dtype, autocast, cpu_state_dict, device_name, device_token_budget, grad_scaler,
                                           pad_batch, precision_name, resolve_device, set_process_device, set_process_precision)
from ml_backend.training import TrainOptions, train_control
from server.cli import main
from server.config import ENV_DEVICE, ENV_PRECISION, Settings

HAS_CUDA = torch.cuda.is_available()

TEXTS = ["the patient had a mild fever and a cough.", "no sign of diabetes or fever today.",
         "asthma flared up after the cold.", "a routine visit, nothing found."] * 3
SPANS = [[(23, 28, "Disease"), (35, 40, "Disease")], [(11, 19, "Disease"), (23, 28, "Disease")], [(0, 6, "Disease")], []] * 3
FIT = {"epochs": 2, "batch_size": 4, "min_steps": 0, "progress": False}


@pytest.fixture(autouse=True)
def _process_device_restored():
    """Tests that set the process's device or precision put ``auto`` back."""
    yield
    set_process_device("auto", "auto")


def fitted_token_classifier(tiny_model_dir, device):
    torch.manual_seed(0)  # the same head for every device argument
    m = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32, stride=8, device=device)
    info = m.fit(Examples(TEXTS, SPANS), val_fraction=0.0, seed=0, **FIT)
    return m, info


# --- the choice --------------------------------------------------------------------------------------------------


def test_auto_is_cuda_when_torch_sees_one_else_the_cpu():
    expected = "cuda" if HAS_CUDA else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(" AUTO ").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "", "cpu:0", "tpu"])
def test_a_bad_spec_is_a_value_error_naming_it(spec):
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N") as exc:
        resolve_device(spec)
    assert repr(spec) in str(exc.value)


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_asked_for_without_one_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="no CUDA device") as exc:
        resolve_device(spec)
    assert repr(spec) in str(exc.value)


def test_the_process_device_is_what_models_without_one_use(tiny_model_dir):
    assert set_process_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert TokenClassifier(["Disease"], model_name=tiny_model_dir).device == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        set_process_device("gpu")
    assert resolve_device(None) == torch.device("cpu")  # a refused spec leaves the device as it was


def test_on_the_cpu_precision_and_batching_stay_as_they_were():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu) is None and not grad_scaler(cpu).is_enabled()
    a = torch.randn(3, 4)
    with autocast(cpu):
        assert (a @ a.T).dtype == torch.float32
    cfg = type("Cfg", (), {"hidden_size": 32})()
    assert device_token_budget(cpu, cfg, 8192) == 8192
    assert device_name(cpu) == "cpu"


def test_settings_read_the_device_from_the_environment():
    assert Settings.from_env({}).device == "auto"
    s = Settings.from_env({ENV_DEVICE: "cpu"})
    assert s.device == "cpu" and s.backend_settings().device == "cpu"
    assert Settings.from_env({ENV_DEVICE: "cpu"}, device="auto").device == "auto"  # a --device option wins


# --- no behaviour change on this CPU -----------------------------------------------------------------------------


def test_auto_fits_and_predicts_exactly_as_without_a_device(tiny_model_dir):
    plain, info_plain = fitted_token_classifier(tiny_model_dir, None)
    auto, info_auto = fitted_token_classifier(tiny_model_dir, "auto" if not HAS_CUDA else "cpu")
    assert [h["train_loss"] for h in info_plain["history"]] == [h["train_loss"] for h in info_auto["history"]]
    for (_, p), (_, q) in zip(plain.token_probs(TEXTS[:4]), auto.token_probs(TEXTS[:4])):
        assert np.array_equal(p, q)
    assert info_auto["device"] == "cpu"


def test_forward_on_the_cpu_is_the_plain_fp32_model_call(tiny_model_dir):
    m, _ = fitted_token_classifier(tiny_model_dir, "cpu")
    ids, _ = m.tokenize(TEXTS[:3])
    seqs = [m.wrap(x) for x in ids]
    got = m.forward(seqs)
    batch, mask = pad_batch(seqs, m.tokenizer.pad_token_id or 0)
    with torch.inference_mode():
        ref = m.model(input_ids=batch, attention_mask=mask).logits.numpy()
    for row, (s, g) in enumerate(zip(seqs, got)):
        assert g.dtype == np.float32 and np.allclose(g, ref[row, : len(s)], atol=1e-5)


def test_the_round_records_the_device_of_each_control(tiny_model_dir):
    from ml_backend.schema import parse_label_config

    spec = parse_label_config("<View><Labels name='ents' toName='text'><Label value='Disease'/></Labels><Text name='text' value='$text'/></View>")
    opts = TrainOptions(cold_start_labels=4, epochs=1, min_steps=0, span_min_steps=0, batch_size=4, model_name=tiny_model_dir, device="auto", progress=False)
    model, info = train_control(spec.controls[0], Examples(TEXTS, SPANS), Examples([], []), opts)
    assert model.kind == "token_classifier" and info["device"] == str(resolve_device("auto")) and info["fit"]["device"] == info["device"]
    cold, cold_info = train_control(spec.controls[0], Examples(TEXTS[:2], SPANS[:2]), Examples([], []), opts)
    assert cold.kind == "span_matcher" and cold_info["device"] == "cpu"


# --- saved models load on any device -----------------------------------------------------------------------------


def test_a_device_mapped_model_saves_cpu_tensors_and_loads_anywhere(tiny_model_dir, tmp_path):
    m, _ = fitted_token_classifier(tiny_model_dir, "cpu")
    m.model.to(resolve_device("cpu"))  # what a CUDA run's model is before saving, mapped to the device there is
    state = cpu_state_dict(m.model)
    assert state.keys() == m.model.state_dict().keys() and all(t.device.type == "cpu" for t in state.values())
    m.save(tmp_path / "m")
    with safe_open(str(tmp_path / "m" / "model.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).device.type == "cpu" for k in f.keys())
    expected = m.token_probs(TEXTS[:4])
    for device in ("auto", "cpu", None):
        loaded = load_model(tmp_path / "m", device=device)
        assert loaded.device == resolve_device(device)
        for (_, p), (_, q) in zip(expected, loaded.token_probs(TEXTS[:4])):
            assert np.allclose(p, q, atol=1e-5)


def test_a_model_saved_with_device_cpu_loads_with_auto(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    m = SequenceClassifier(["pos", "neg"], model_name=tiny_model_dir, max_length=32, device="cpu")
    m.fit(Examples(TEXTS, [["pos"], ["neg"], ["pos"], ["neg"]] * 3), val_fraction=0.0, seed=0, **FIT)
    m.save(tmp_path / "s")
    loaded = load_model(tmp_path / "s", device="auto")
    assert np.allclose(m.probabilities(TEXTS), loaded.probabilities(TEXTS), atol=1e-5)


# --- the backend and the CLI ---------------------------------------------------------------------------------------


def test_health_and_metrics_report_the_device(tiny_client):
    want = device_name(resolve_device("auto"))
    assert tiny_client.get("/health").get_json()["device"] == want
    assert f'goldloop_device_info{{device="{want}"}} 1.0' in tiny_client.get("/metrics").get_data(as_text=True)


def test_a_bad_device_stops_the_backend_before_any_model_loads(tiny_settings):
    with pytest.raises(ValueError, match="'gpu'"):
        create_app(tiny_settings.with_overrides(device="gpu"))


@pytest.mark.parametrize("command", [["backend", "--port", "1"], ["train", "demo"]])
def test_the_cli_answers_a_bad_device_in_one_line(command, tmp_path):
    result = CliRunner().invoke(main, [*command, "--data-dir", str(tmp_path), "--device", "gpu"])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "'gpu'" in lines[0] and "auto, cpu, cuda or cuda:N" in lines[0]


# --- precision ----------------------------------------------------------------------------------------------------


def test_bf16_autocasts_on_the_cpu_and_auto_puts_fp32_back():
    cpu = torch.device("cpu")
    a = torch.randn(3, 4)
    assert set_process_precision(" BF16 ") == "bf16"
    assert amp_dtype(cpu) == torch.bfloat16 and precision_name(cpu) == "bf16"
    assert not grad_scaler(cpu).is_enabled()  # bf16 needs no loss scaling
    with autocast(cpu):
        assert (a @ a.T).dtype == torch.bfloat16
    set_process_precision("fp32")
    assert amp_dtype(cpu) is None and precision_name(cpu) == "fp32"
    set_process_precision("auto")
    with autocast(cpu):
        assert (a @ a.T).dtype == torch.float32


def test_bf16_on_a_cpu_that_emulates_it_is_kept_but_warned_about_once(monkeypatch, caplog):
    from ml_backend.models import torch_utils

    cpu = torch.device("cpu")
    set_process_precision("bf16")
    torch_utils._warn_emulated_bf16.cache_clear()
    monkeypatch.setattr(torch_utils, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="ml_backend.models.torch_utils"):
        assert amp_dtype(cpu) == torch.bfloat16 and precision_name(cpu) == "bf16"  # what was asked for still runs
    assert [r.getMessage() for r in caplog.records if "emulates" in r.getMessage()] == [caplog.records[0].getMessage()]
    assert "GOLDLOOP_PRECISION=auto or fp32" in caplog.records[0].getMessage()
    torch_utils._warn_emulated_bf16.cache_clear()
    caplog.clear()
    monkeypatch.setattr(torch_utils, "cpu_has_native_bf16", lambda: True)
    set_process_precision("auto")
    amp_dtype(cpu)
    set_process_precision("bf16")
    amp_dtype(cpu)
    assert not caplog.records


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file() or platform.machine() != "x86_64", reason="reads the x86 flags of /proc/cpuinfo")
def test_native_bf16_is_what_the_cpu_flags_say():
    from ml_backend.models.torch_utils import cpu_has_native_bf16

    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_tile"} & set(flags))


def test_a_bad_precision_is_refused_and_changes_nothing():
    set_process_precision("bf16")
    with pytest.raises(ValueError, match="auto, bf16, fp32") as exc:
        set_process_precision("fp16")
    assert "'fp16'" in str(exc.value) and precision_name("cpu") == "bf16"
    with pytest.raises(ValueError, match="'half'"):
        set_process_device("cpu", "half")
    assert precision_name("cpu") == "bf16"


def test_a_bf16_fit_on_the_cpu_trains_predicts_and_records_it(tiny_model_dir):
    set_process_precision("bf16")
    m, info = fitted_token_classifier(tiny_model_dir, "cpu")
    assert info["precision"] == "bf16" and all(np.isfinite(h["train_loss"]) for h in info["history"])
    bf16 = [p for _, p in m.token_probs(TEXTS[:4])]
    set_process_precision("fp32")
    fp32 = [p for _, p in m.token_probs(TEXTS[:4])]
    for p, q in zip(bf16, fp32):  # the same weights: bf16 matmuls round, so close but not equal
        assert p.dtype == np.float32 and np.allclose(p.sum(1), 1, atol=1e-3)
        assert np.abs(p - q).max() < 0.05
    assert any(not np.array_equal(p, q) for p, q in zip(bf16, fp32))
    _, info32 = fitted_token_classifier(tiny_model_dir, "cpu")
    assert info32["precision"] == "fp32"


def test_settings_read_the_precision_from_the_environment():
    assert Settings.from_env({}).precision == "auto"
    s = Settings.from_env({ENV_PRECISION: "BF16"})
    assert s.precision == "bf16" and s.backend_settings().precision == "bf16"
    with pytest.raises(ValueError, match=f"{ENV_PRECISION} must be auto, bf16, fp32, got 'fp16'"):
        Settings.from_env({ENV_PRECISION: "fp16"})


def test_the_backend_runs_in_its_settings_precision(tiny_settings):
    app = create_app(tiny_settings.with_overrides(precision="bf16"))
    assert precision_name("cpu") == "bf16"
    reported = app.test_client().get("/health").get_json()["precision"]
    assert reported == precision_name(resolve_device("auto")) and (HAS_CUDA or reported == "bf16")
    app = create_app(tiny_settings.with_overrides(precision="fp32"))
    assert app.test_client().get("/health").get_json()["precision"] == "fp32"
    with pytest.raises(ValueError, match="'fp8'"):
        create_app(tiny_settings.with_overrides(precision="fp8"))


def test_the_cli_answers_a_bad_precision_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "demo", "--data-dir", str(tmp_path)], env={ENV_PRECISION: "fp16"})
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and ENV_PRECISION in lines[0] and "'fp16'" in lines[0]


# --- CUDA (pytest -m gpu) ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_gpu_fine_tune_and_predict_under_autocast(tiny_model_dir):
    m, info = fitted_token_classifier(tiny_model_dir, "cuda")
    assert m.device.type == "cuda" and info["device"].startswith("cuda")
    assert next(m.model.parameters()).device.type == "cuda" and amp_dtype(m.device) in (torch.bfloat16, torch.float16)
    assert all(np.isfinite(h["train_loss"]) for h in info["history"])
    cpu, _ = fitted_token_classifier(tiny_model_dir, "cpu")
    for (_, p), (_, q) in zip(m.token_probs(TEXTS[:4]), cpu.token_probs(TEXTS[:4])):
        assert p.shape == q.shape and np.allclose(p.sum(1), 1, atol=1e-3)
    assert m.batch_size is None and m.token_budget >= 8192  # GPU batches: the token budget alone


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_gpu_save_loads_on_the_cpu_and_back(tiny_model_dir, tmp_path):
    m, _ = fitted_token_classifier(tiny_model_dir, "cuda")
    m.save(tmp_path / "gpu")
    on_cpu = load_model(tmp_path / "gpu", device="cpu")
    assert next(on_cpu.model.parameters()).device.type == "cpu"
    ref = [p for _, p in on_cpu.token_probs(TEXTS[:4])]
    on_cpu.save(tmp_path / "cpu")
    back = load_model(tmp_path / "cpu", device="cuda")
    assert next(back.model.parameters()).device.type == "cuda"
    for p, (_, q) in zip(ref, back.token_probs(TEXTS[:4])):  # fp32 on the CPU vs bf16/fp16 autocast on the GPU
        assert np.abs(p - q).max() < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_gpu_int8_serving_stays_on_the_cpu(tiny_model_dir):
    m = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32, device="cuda", quantize="int8-torch")
    assert m.device.type == "cuda" and m.serving_device.type == "cpu"
    assert len(m.predict(TEXTS[:2])) == 2
