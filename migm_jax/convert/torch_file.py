"""Read PyTorch checkpoint files (`.pth`, `.ckpt`) without importing torch.

`torch.save` writes a zip archive holding a pickle (`<name>/data.pkl`) whose tensors point at raw
storages (`<name>/data/<key>`). This reader unpickles with a closed allow-list: tensors become numpy
arrays (and so do numpy arrays pickled as such), plain containers stay plain, and any other class named in
the pickle (Lightning callbacks, argparse namespaces, ...) becomes an inert `Opaque` record. No code from the file is ever executed,
which is the same guarantee as `torch.load(weights_only=True)`.

Legacy (pre-zip) files are handed to `torch.load(weights_only=True)` when torch is installed.
`save_torch_file` writes the same zip format (tensors as contiguous storages), also without torch.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from migm_jax.files import check_input_file

try:  # bfloat16 storages need ml_dtypes (a jax dependency).
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    _BF16 = None

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _BF16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_TORCH_DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": _BF16, "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
    "bool": np.bool_,
}


class Opaque:
    """Stand-in for a class the reader does not know; keeps its name and arguments only."""

    def __init__(self, name: str, *args, **kwargs):
        self.name, self.args, self.kwargs, self.state = name, args, kwargs, None

    def __call__(self, *args, **kwargs):
        return Opaque(self.name, *args, **kwargs)

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"Opaque({self.name})"


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *unused):
    """Builds the numpy view `torch._utils._rebuild_tensor_v2` would build."""
    itemsize = storage.dtype.itemsize
    if len(size) == 0:
        return storage[offset].copy()
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()


def _rebuild_parameter(data, *unused):
    return data


# numpy arrays pickled inside a torch file (torch-fidelity caches FID statistics that way); the same globals
# torch.load(weights_only=True) allows for them, each of which only builds an array, a dtype or a scalar.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    **{(module, "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0]
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): np.float64(0).__reduce__()[0] for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive, self._prefix, self._storages = archive, prefix, {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _StorageType(_TORCH_DTYPES[name])
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[module, name]
        if module == "builtins" and name in ("set", "frozenset", "slice", "complex"):
            return {"set": set, "frozenset": frozenset, "slice": slice, "complex": complex}[name]
        return Opaque(f"{module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        assert kind == "storage", f"unknown persistent id {kind!r}"
        if key not in self._storages:
            dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else None
            if dtype is None:
                raise ValueError(f"unsupported tensor storage type {storage_type!r} in checkpoint")
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype)
        return self._storages[key]


def check_checkpoint_file(path: str | os.PathLike) -> str:
    """`path` as a string; FileNotFoundError / IsADirectoryError (one line) unless it is a file."""
    return check_input_file(path, "checkpoint", "give the checkpoint file (.pth / .ckpt), downloaded first")


def load_torch_file(path: str | os.PathLike) -> Any:
    """Loads a `torch.save` file; tensors come back as numpy arrays (same dtype, same layout).

    Raises FileNotFoundError with the path when the file is missing, and ValueError naming the file when
    it is not a readable torch checkpoint (another format, damaged, legacy format without torch).
    """
    path = check_checkpoint_file(path)
    if not zipfile.is_zipfile(path):
        return _load_legacy(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pickles:
                raise ValueError(f"{path} is a zip file but not a torch checkpoint (no data.pkl inside)")
            prefix = pickles[0][: -len("/data.pkl")] if "/" in pickles[0] else ""
            with archive.open(pickles[0]) as f:
                return _Unpickler(io.BytesIO(f.read()), archive, prefix).load()
    except (zipfile.BadZipFile, KeyError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} is a damaged torch checkpoint ({type(e).__name__}: {e}); download it again") from e


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"PK":  # a zip archive whose central directory is missing: cut off while downloading or copying
        raise ValueError(f"{path} is a damaged torch checkpoint (truncated zip archive); download it again")
    if head[:1] != b"\x80":  # every pickle of protocol >= 2 starts with PROTO
        raise ValueError(f"{path} is not a PyTorch checkpoint (neither a torch.save zip nor a legacy pickle)")
    try:
        import torch
    except ImportError as e:
        raise ValueError(
            f"{path} uses the legacy (pre-zip) torch format; install the extra 'migm-jax[torch]' to read it"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} could not be read as a legacy torch checkpoint ({e})") from e

    def to_numpy(x):
        if isinstance(x, torch.Tensor):
            x = x.detach()
            return x.float().numpy().astype(_BF16) if x.dtype == torch.bfloat16 else x.numpy()
        if isinstance(x, dict):
            return type(x)((k, to_numpy(v)) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return type(x)(to_numpy(v) for v in x)
        return x

    return to_numpy(obj)


# ------------------------------------------------------------------------------------------- writing

_NUMPY_STORAGES = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items() if v is not None}


class _Global:
    """A `module.name` reference written as a pickle GLOBAL without importing the module."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce requires a callable; only the reference is written
        raise TypeError(f"{self.module}.{self.name} is a reference for pickling, not a function")


class _Storage:
    """Persistent id of one tensor's storage record `data/<key>`."""

    def __init__(self, key: str, array: np.ndarray):
        self.pid = ("storage", _Global("torch", _NUMPY_STORAGES[array.dtype]), key, "cpu", array.size)


class _Tensor:
    """A contiguous array, pickled as torch does: `_rebuild_tensor_v2(storage, offset, size, stride, ...)`."""

    def __init__(self, key: str, array: np.ndarray):
        self.storage, self.shape = _Storage(key, array), array.shape
        self.stride = tuple(s // array.itemsize for s in array.strides)

    def __reduce__(self):
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, 0, self.shape, self.stride, False, collections.OrderedDict()))


class _Pickler(pickle._Pickler):
    """Protocol-2 pickler writing `_Global`s as GLOBAL opcodes and `_Storage`s as persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_reference(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = _save_global_reference

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


def save_torch_file(path: str | os.PathLike, tensors: dict[str, np.ndarray]) -> None:
    """Writes `{name: array}` atomically as a `torch.save` zip holding an OrderedDict of CPU tensors.

    Readable by `torch.load(path, weights_only=True)` and by `load_torch_file`."""
    path = os.fspath(path)
    arrays = {}
    for name, value in tensors.items():
        array = np.asarray(value, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        if array.dtype not in _NUMPY_STORAGES:
            raise ValueError(f"{name}: dtype {array.dtype} has no torch storage type")
        arrays[name] = array if array.dtype.byteorder != ">" else array.astype(array.dtype.newbyteorder("<"))
    pickled = io.BytesIO()
    _Pickler(pickled, protocol=2).dump(collections.OrderedDict(
        (name, _Tensor(str(i), a)) for i, (name, a) in enumerate(arrays.items())))
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        archive.writestr("archive/byteorder", "little")
        for i, array in enumerate(arrays.values()):
            archive.writestr(f"archive/data/{i}", array.tobytes())
        archive.writestr("archive/version", "3\n")
    os.replace(tmp, path)
