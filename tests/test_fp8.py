"""The opt-in FP8 path (models/fp8.py): weight and activation quantisation, LLaDA on quantised params
close to the same model in float32 (the fixture LLaDA; `sample.py --matmul fp8` runs in
test_dimoo_prompts.py's end-to-end test; speed is measured in benchmarks/bench_dimoo.py), and which devices
run it natively."""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import fixture_path
from migm_jax.convert.dimoo import llada
from migm_jax.models.fp8 import FP8, FP8_LINEARS, fp8_matmul, quantize_kernel, quantize_llada
from migm_jax.models.llada import LLaDA

E4M3_STEP = 2.0 ** -3  # spacing of e4m3 mantissas: relative rounding error <= half of it (normal range)


def test_quantized_kernel_has_per_channel_scales_and_e4m3_rounding():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(64, 8)) * np.geomspace(1e-3, 1e2, 8)  # channels of very different magnitude
    kernel[:, 3] = 0.0
    q = quantize_kernel(jnp.asarray(kernel, jnp.float32))
    assert q["qkernel"].dtype == FP8 and q["scale"].shape == (8,)
    np.testing.assert_allclose(q["scale"], np.where(np.abs(kernel).max(0) > 0, np.abs(kernel).max(0) / 448, 1), rtol=1e-6)
    assert q["qkernel"].shape == (8, 64)  # (out, in): K-major for the FP8 GEMM
    back = (np.asarray(q["qkernel"], np.float32) * np.asarray(q["scale"])[:, None]).T
    assert np.all(np.abs(back).max(0) <= np.abs(kernel).max(0) * (1 + 1e-6))
    # each channel's largest entry is exact; the rest within half a mantissa step (or the subnormal spacing)
    tol = np.maximum(np.abs(kernel) * E4M3_STEP / 2, np.asarray(q["scale"]) * 2.0 ** -9 / 2) * (1 + 1e-6)
    assert np.all(np.abs(back - kernel) <= tol) and np.all(back[:, 3] == 0)


def test_fp8_matmul_is_close_to_float32_and_scales_each_row():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 64)).astype(np.float32)
    x[0, 1] *= 1e3  # a row 1000 times larger: a per-tensor scale would flush the others' small values
    w = rng.normal(size=(64, 32)).astype(np.float32)
    q = quantize_kernel(jnp.asarray(w))
    y = np.asarray(fp8_matmul(jnp.asarray(x), q["qkernel"], q["scale"], jnp.float32))
    exact = x @ w
    row_err = np.linalg.norm(y - exact, axis=-1) / np.linalg.norm(exact, axis=-1)
    assert row_err.max() < 0.08, row_err.max()  # ~3-4% measured for e4m3 operands
    assert row_err.min() > 1e-3  # really quantised, not a float32 product


def test_llada_on_quantized_params_tracks_float32():
    cfg, params = llada(fixture_path("llada"))
    qparams = quantize_llada(params)
    block = qparams["transformer"]["blocks_0"]
    assert all(set(block[k]) == {"qkernel", "scale"} and block[k]["qkernel"].dtype == FP8 for k in FP8_LINEARS)
    assert qparams["transformer"]["ff_out"]["kernel"].dtype == params["transformer"]["ff_out"]["kernel"].dtype
    ids = jnp.asarray(np.random.default_rng(2).integers(0, cfg.embedding_size, (2, 12)), jnp.int32)
    ref = LLaDA(cfg, jnp.float32).apply({"params": params}, ids, method=LLaDA.features)
    out = LLaDA(cfg, jnp.float32, matmul="fp8").apply({"params": qparams}, ids, method=LLaDA.features)
    cos = np.sum(ref * out, -1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(out, axis=-1))
    assert cos.mean() > 0.99 and cos.min() > 0.97, (cos.mean(), cos.min())  # 0.993 / 0.979 measured (bf16: 0.9999)
    assert float(jnp.abs(out - ref).max()) > 0.1  # both in float32 otherwise: the difference is FP8 (0.64 measured)
    # the image logits (README's accuracy figures): relative error and argmax agreement against float32
    logits = [LLaDA(cfg, jnp.float32, matmul=m).apply({"params": p}, f, 512, 256, method=LLaDA.image_logits)
              for m, p, f in ((None, params, ref), ("fp8", qparams, out))]
    rel = float(jnp.linalg.norm(logits[1] - logits[0]) / jnp.linalg.norm(logits[0]))
    agree = float(jnp.mean(logits[1].argmax(-1) == logits[0].argmax(-1)))
    assert 0.03 < rel < 0.16 and agree > 0.7, (rel, agree)  # 0.121 / 0.875 measured (bf16 ~0.013 / 0.98)



def test_native_fp8_needs_a_gpu_of_compute_capability_8_9():
    from types import SimpleNamespace

    from migm_jax.models.fp8 import runs_natively

    gpu = lambda cc: SimpleNamespace(platform="gpu", compute_capability=cc)
    assert runs_natively(gpu("9.0")) and runs_natively(gpu("8.9")) and runs_natively(gpu("10.0"))
    assert not runs_natively(gpu("8.6")) and not runs_natively(gpu("gfx942"))  # Ampere; a ROCm name
    assert not runs_natively(SimpleNamespace(platform="cpu")) and not runs_natively(jax.devices("cpu")[0])
