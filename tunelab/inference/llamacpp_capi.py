"""ctypes declarations of llama.cpp's C API, as built into gpt4all 2.8.2's wheel.

PyPI has no wheel of llama-cpp-python, but gpt4all's wheel ships llama.cpp (mid-2024)
compiled, with its whole C API exported from `libllamamodel-mainline-*.so`. tunelab
drives that API directly: batched `llama_decode` over many sequences, the logits
back to Python, runtime LoRA adapters. The library is pinned with the wheel
(gpt4all==2.8.2) because the struct layouts below are that build's:

- `llama_model_params` (64 bytes) and `llama_context_params` (120 bytes) are taken
  from the library's own `*_default_params()` and passed back whole; only the
  leading integer fields of the context's (n_ctx ... n_threads_batch) are set.
- `llama_batch` (72 bytes) is declared field by field: it is filled here; so is
  `llama_model_quantize_params` (40 bytes).

The layouts were read from the library's code (the stores in its default-params
functions and `llama_batch_get_one`); `load()` checks the sizes the defaults
report against them so a different build fails loudly instead of corrupting memory.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import sys
import threading
from pathlib import Path

log = logging.getLogger("tunelab.llama.cpp")

c_int32_p = ctypes.POINTER(ctypes.c_int32)


class ModelParams(ctypes.Structure):
    _fields_ = [("n_gpu_layers", ctypes.c_int32), ("_rest", ctypes.c_byte * 60)]


class ContextParams(ctypes.Structure):
    _fields_ = [
        ("seed", ctypes.c_uint32),
        ("n_ctx", ctypes.c_uint32),
        ("n_batch", ctypes.c_uint32),
        ("n_ubatch", ctypes.c_uint32),
        ("n_seq_max", ctypes.c_uint32),
        ("n_threads", ctypes.c_uint32),
        ("n_threads_batch", ctypes.c_uint32),
        ("_rest", ctypes.c_byte * 92),
    ]


class Batch(ctypes.Structure):
    _fields_ = [
        ("n_tokens", ctypes.c_int32),
        ("token", c_int32_p),
        ("embd", ctypes.POINTER(ctypes.c_float)),
        ("pos", c_int32_p),
        ("n_seq_id", c_int32_p),
        ("seq_id", ctypes.POINTER(c_int32_p)),
        ("logits", ctypes.POINTER(ctypes.c_int8)),
        ("all_pos_0", ctypes.c_int32),
        ("all_pos_1", ctypes.c_int32),
        ("all_seq_id", ctypes.c_int32),
    ]


class QuantizeParams(ctypes.Structure):
    _fields_ = [
        ("nthread", ctypes.c_int32),
        ("ftype", ctypes.c_int32),
        ("output_tensor_type", ctypes.c_int32),
        ("token_embedding_type", ctypes.c_int32),
        ("allow_requantize", ctypes.c_bool),
        ("quantize_output_tensor", ctypes.c_bool),
        ("only_copy", ctypes.c_bool),
        ("pure", ctypes.c_bool),
        ("keep_split", ctypes.c_bool),
        ("imatrix", ctypes.c_void_p),
        ("kv_overrides", ctypes.c_void_p),
    ]


# llama_ftype values of the weight types tunelab offers (registry LLAMACPP_WEIGHTS)
FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9}

LogCallback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "llama_backend_init": (None, []),
    "llama_log_set": (None, [LogCallback, ctypes.c_void_p]),
    "llama_model_default_params": (ModelParams, []),
    "llama_context_default_params": (ContextParams, []),
    "llama_load_model_from_file": (ctypes.c_void_p, [ctypes.c_char_p, ModelParams]),
    "llama_free_model": (None, [ctypes.c_void_p]),
    "llama_new_context_with_model": (ctypes.c_void_p, [ctypes.c_void_p, ContextParams]),
    "llama_free": (None, [ctypes.c_void_p]),
    "llama_n_vocab": (ctypes.c_int32, [ctypes.c_void_p]),
    "llama_n_ctx": (ctypes.c_uint32, [ctypes.c_void_p]),
    "llama_batch_init": (Batch, [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]),
    "llama_batch_free": (None, [Batch]),
    "llama_decode": (ctypes.c_int32, [ctypes.c_void_p, Batch]),
    "llama_get_logits": (ctypes.POINTER(ctypes.c_float), [ctypes.c_void_p]),
    "llama_get_logits_ith": (ctypes.POINTER(ctypes.c_float), [ctypes.c_void_p, ctypes.c_int32]),
    "llama_kv_cache_seq_rm": (
        ctypes.c_bool,
        [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32],
    ),
    "llama_kv_cache_seq_cp": (
        None,
        [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32],
    ),
    "llama_kv_cache_clear": (None, [ctypes.c_void_p]),
    "llama_model_quantize_default_params": (QuantizeParams, []),
    "llama_model_quantize": (
        ctypes.c_uint32,
        [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)],
    ),
    "llama_lora_adapter_init": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
    "llama_lora_adapter_set": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]),
    "llama_lora_adapter_remove": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_void_p]),
    "llama_lora_adapter_free": (None, [ctypes.c_void_p]),
}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def library_path() -> Path:
    """gpt4all's CPU build of llama.cpp: its Kompute build (used here without a GPU),
    except on macOS, which has a "cpu" build."""
    spec = importlib.util.find_spec("gpt4all")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the gpt4all package (llama.cpp's library) is not installed")
    build = Path(next(iter(spec.submodule_search_locations))) / "llmodel_DO_NOT_MODIFY" / "build"
    name = "cpu" if sys.platform == "darwin" else "kompute"
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    return build / f"libllamamodel-mainline-{name}{suffix}"


def _log_line(level: int, text: bytes | None, _user: int | None) -> None:
    # llama.cpp is chatty (every tensor at load); its errors also surface as return codes
    if text:
        log.debug("%s", text.decode(errors="replace").rstrip())


_log = LogCallback(_log_line)  # kept referenced: llama.cpp holds the pointer


def load() -> ctypes.CDLL:
    """The library with every function used here declared; initialised once per process."""
    global _lib
    with _lock:
        if _lib is None:
            lib = ctypes.CDLL(str(library_path()))
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = restype, argtypes
            lib.llama_log_set(_log, None)
            lib.llama_backend_init()
            _check_layouts(lib)
            _lib = lib
        return _lib


def _check_layouts(lib: ctypes.CDLL) -> None:
    """The defaults of the build these layouts were read from; anything else is refused."""
    cp = lib.llama_context_default_params()
    mp = lib.llama_model_default_params()
    qp = lib.llama_model_quantize_default_params()
    seen = (cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max, mp.n_gpu_layers, qp.ftype)
    if seen != (512, 2048, 512, 1, 0, FTYPES["q5_1"]) or not qp.quantize_output_tensor:
        raise ImportError(
            f"{library_path()} is not the llama.cpp build tunelab was written for "
            "(gpt4all==2.8.2): its default parameters differ"
        )


def quantize(source: Path, target: Path, weights: str, threads: int) -> None:
    """Write `source` with its weights converted to `weights` (a FTYPES key) to `target`."""
    lib = load()
    params = lib.llama_model_quantize_default_params()
    params.ftype = FTYPES[weights]
    params.allow_requantize = True  # the source is usually quantised already
    params.nthread = threads
    if lib.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)):
        raise RuntimeError(f"llama.cpp could not convert {source} to {weights}")
