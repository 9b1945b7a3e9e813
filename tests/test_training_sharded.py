"""One train step on 8 fake CPU devices (data=4 x fsdp=2) equals the single-device step."""

from conftest import run_on_fake_devices

SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from migm_jax.sampling.schedules import maskgit_schedule
from migm_jax.sharding import batch_sharding, make_mesh
from migm_jax.training.config import load_config
from migm_jax.training.loop import build_family
from migm_jax.training.step import fsdp_sharding, make_init, make_train_step, state_layout, step_config

assert jax.device_count() == 8
cfg = load_config("configs/smoke.py", ["batch_size=8", "kl_weight=0.5"])
family, teacher, _, _, _ = build_family(cfg)
tc, steps, b = family.transformer, family.steps, 8
rng = np.random.default_rng(0)
sche = maskgit_schedule(steps, "arccos", tc.grid)
order = np.stack([np.concatenate([rng.permutation(np.repeat(np.arange(steps), sche)), [-1]]) for _ in range(b)])
ids = np.concatenate([rng.integers(0, tc.codebook_size, (b, tc.grid ** 2)), np.full((b, 1), tc.codebook_size + 3)], 1)
raw = {"prev_feat": rng.normal(size=(b, tc.seq_len, tc.hidden)).astype(jnp.bfloat16),
       "tgt_feat": rng.normal(size=(b, tc.seq_len, tc.hidden)).astype(jnp.bfloat16),
       "step": rng.integers(0, steps - 1, b).astype(np.int32), "ids": ids.astype(np.int32), "order": order.astype(np.int32)}
scfg = step_config(cfg)
initial = jax.device_get(make_init(family, scfg, make_mesh(devices=jax.devices()[:1]))(None, jax.random.PRNGKey(0)))
results = []
for mesh in (make_mesh(devices=jax.devices()[:1]), make_mesh(fsdp=2)):
    state = jax.device_put(initial, state_layout(family, scfg, mesh)[1])
    tp = jax.device_put(teacher, fsdp_sharding(mesh, teacher))
    state, metrics = make_train_step(family, scfg, mesh, 1)(state, jax.device_put(raw, batch_sharding(mesh)), tp, jnp.int32(0))
    results.append(jax.device_get((state.params, state.ema, state.opt_state, metrics)))
specs = [x.sharding.spec for x in jax.tree.leaves(state.params)]
assert mesh.devices.size == 8 and any("fsdp" in s for s in specs), specs


def close(path, a, b):
    # Attention key biases shift every logit of a query equally: their gradient is exactly zero
    # mathematically, so it is pure round-off, which Adam's normalisation turns into +-lr steps.
    if "['k']['bias']" not in jax.tree_util.keystr(path):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=jax.tree_util.keystr(path))


jax.tree_util.tree_map_with_path(close, results[0], results[1])
print("SHARDED-TRAIN-OK")
"""


def test_sharded_train_step_equals_single_device():
    # optimisation level 0: half the compile time, same program on both meshes
    run_on_fake_devices(SCRIPT, "SHARDED-TRAIN-OK", xla_flags="--xla_backend_optimization_level=0")
