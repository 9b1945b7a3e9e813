"""FID Inception-v3 features in JAX, matching pytorch-fid and torch-fidelity.

  params = load_inception("pt_inception-2015-12-05-6726825d.pth", flavor="pytorch-fid")
  pool, logits = inception_features(params, images_uint8, flavor="pytorch-fid")

Both packages ship the same TF 2015-12-05 weights under the same PyTorch module names; `from_state_dict`
maps such a state dict 1:1 onto the params of `inception_net.InceptionV3`, strictly (every key used,
every shape checked). The flavor picks the preprocessing (see `inception_preprocess`): the two packages
resize differently, so their features differ for images that are not 299x299.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.convert.state_dict import CheckpointError, StateDict, check_shapes
from migm_jax.convert.torch_file import load_torch_file
from migm_jax.eval.inception_net import InceptionV3
from migm_jax.eval.inception_preprocess import SIZE, check_flavor, preprocess

WEIGHTS = {  # flavor -> (file name, where the package downloads it from)
    "pytorch-fid": ("pt_inception-2015-12-05-6726825d.pth",
                    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                    "pt_inception-2015-12-05-6726825d.pth"),
    "torch-fidelity": ("weights-inception-2015-12-05-6726825d.pth",
                       "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                       "weights-inception-2015-12-05-6726825d.pth"),
}
_TORCH_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_SKIPPED_SUFFIX = ".num_batches_tracked"  # a training counter of PyTorch's batch norm, unused at inference


@functools.lru_cache(maxsize=1)
def _expected_params() -> Any:
    """The params tree of `InceptionV3` as shape/dtype structs."""
    return jax.eval_shape(lambda: InceptionV3().init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3))))["params"]


def _torch_key(path: tuple) -> str:
    """State dict key of a params path: (Mixed_5b, branch1x1, bn, mean) -> 'Mixed_5b.branch1x1.bn.running_mean'."""
    names = [entry.key for entry in path]
    return ".".join(names[:-1] + [_TORCH_NAMES[names[-1]]])


def _layout(w: np.ndarray) -> np.ndarray:
    """PyTorch weight -> Flax kernel: Conv2d (O, I, kh, kw) -> (kh, kw, I, O), Linear (out, in) -> (in, out)."""
    return w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T


def _expected_file(flavor: str) -> str:
    name, url = WEIGHTS[flavor]
    return f"{flavor}'s {name} (download: {url})"


def from_state_dict(tensors: Mapping[str, np.ndarray], source: str = "state dict") -> dict:
    """FID Inception state dict {torch key: array} -> InceptionV3 params (float32 numpy), checked strictly.

    CheckpointError naming `source` and the offending keys for missing or unexpected keys, wrong shapes
    (e.g. torchvision's inception_v3 weights) and NaN / infinite values."""
    tensors = {k: v for k, v in tensors.items() if not k.endswith(_SKIPPED_SUFFIX)}
    sd = StateDict(tensors, source)
    params = jax.tree_util.tree_map_with_path(
        lambda path, _: sd.get(_torch_key(path), _layout if path[-1].key == "kernel" else None), _expected_params())
    try:
        sd.finish()
        check_shapes(params, _expected_params(), source, sd.origin_of)
    except CheckpointError as e:
        if sd.nonfinite:
            raise
        torchvision = "AuxLogits.fc.weight" in tensors
        lead = "these look like torchvision's inception_v3 weights (another graph); " if torchvision else ""
        raise CheckpointError(f"{e}; {lead}the FID Inception needs {WEIGHTS['pytorch-fid'][0]} or "
                              f"{WEIGHTS['torch-fidelity'][0]}") from None
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)


def load_inception(path: str | os.PathLike, flavor: str = "pytorch-fid") -> dict:
    """Reads the Inception weights file of `flavor`'s package -> params (on the default device).

    One-line errors naming the file: FileNotFoundError when it is missing, ValueError when it is not a
    readable PyTorch checkpoint, CheckpointError when it is not the FID Inception (see `from_state_dict`)."""
    check_flavor(flavor)
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "not found"
        raise FileNotFoundError(f"Inception weights {path} {what}: pass the path of {_expected_file(flavor)}")
    try:
        tensors = load_torch_file(path)
    except ValueError as e:
        raise ValueError(f"{e}; the Inception weights are {_expected_file(flavor)}") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, (np.ndarray, np.generic)) for v in tensors.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors ({type(tensors).__name__}); the Inception "
                              f"weights are {_expected_file(flavor)}")
    return jax.device_put(from_state_dict(tensors, path))


@jax.jit
def _network(params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return InceptionV3().apply({"params": params}, x)


def inception_features(params: dict, images, flavor: str = "pytorch-fid") -> tuple[jax.Array, jax.Array]:
    """images (b, H, W, 3) uint8 RGB, any H and W -> (pool (b, 2048), logits (b, 1008)), both float32.

    pool is the 2048-d average-pool feature FID uses; logits is the fc output including its bias. `flavor`
    ("pytorch-fid" or "torch-fidelity") selects that package's resizing and normalisation. Runs as two
    compiled programs, the preprocessing (one per input shape and flavor) and the network (one per batch
    size), so every input size and both flavors share the network's compilation."""
    check_flavor(flavor)
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != jnp.uint8:
        raise ValueError(f"expected uint8 RGB images of shape (b, H, W, 3), got {images.dtype} {images.shape}")
    return _network(params, preprocess(images, flavor=flavor))
