"""One runner interface over every way saliq runs a model (in the manner of Polygraphy's runners).

A :class:`Runner` is activated (loads its model), runs ``infer(feeds) -> outputs`` any number
of times, and is deactivated (releases it); ``with runner:`` does both. Feeds and outputs are
dicts of ``[N, ...]`` arrays keyed by the ModelSpec's input and output names, so any two
runners of one model can be compared by :mod:`saliq.bench.compare` and timed by
:mod:`saliq.bench.timer`.

* :class:`BackendRunner`: any saliq backend (ONNX Runtime, TensorRT, PyTorch), given open or
  as a zero-argument factory that opens it on activation;
* :class:`OnnxRuntimeRunner`: the one ONNX Runtime reference runner (CPU, FP32 by default);
* :class:`TorchRunner`: a checkpoint through the PyTorch backend, or an in-memory model;
* :class:`TorchModuleRunner`: an in-memory PyTorch model at a device and precision (fp32,
  fp16/bf16 autocast), optionally ``torch.compile``d, with device-resident inputs for timing;
* :class:`CallableRunner`: any function ``feeds -> outputs`` (tests, custom runtimes).

For timing, :meth:`Runner.prepare` turns host feeds into what :meth:`Runner.run_prepared`
takes (by default the same host arrays: the runtime's own copies are part of its latency),
so ``saliq bench`` prepares once per batch size and times ``run_prepared`` alone.

Nothing heavy is imported here: each runtime is imported when its runner is activated.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import MAX_BATCH, Backend
from ..errors import BackendClosedError
from ..spec import ModelSpec

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
REFERENCE_PROVIDERS = ("CPUExecutionProvider",)  # the reference: deterministic FP32 on CPU


class Runner(ABC):
    """Activate, infer, deactivate; subclasses implement the three underscored hooks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_active = False
        self.last_inference_ms: float | None = None

    @property
    def spec(self) -> ModelSpec | None:
        """The model's spec once known (after activation for file-backed runners)."""
        return None

    def activate(self) -> Runner:
        """Load the model (a no-op when already active); returns the runner."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        """Release the model (a no-op when not active)."""
        if self.is_active:
            self.is_active = False
            self._deactivate()

    def infer(self, feeds: Feeds) -> Outputs:
        """Run one batch; records ``last_inference_ms`` (wall time of this call)."""
        if not self.is_active:
            raise BackendClosedError(
                f"runner {self.name!r} is not active; use `with runner:` or runner.activate()"
            )
        start = time.perf_counter_ns()
        outputs = self._infer(feeds)
        self.last_inference_ms = (time.perf_counter_ns() - start) / 1e6
        return outputs

    def prepare(self, feeds: Feeds) -> Any:
        """What :meth:`run_prepared` takes: the host feeds unchanged by default; a device
        runtime may place them on its device once, outside the timed call."""
        return feeds

    def run_prepared(self, prepared: Any) -> Any:
        """One inference on prepared feeds (the timed call); by default :meth:`infer`.
        Device runners may return device tensors without waiting: :meth:`synchronize`."""
        return self.infer(prepared)

    def synchronize(self) -> None:
        """Wait for the work this runner queued on its device (host runtimes: nothing)."""
        return None

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"<{type(self).__name__} {self.name!r} ({state})>"

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _infer(self, feeds: Feeds) -> Outputs: ...

    @abstractmethod
    def _deactivate(self) -> None: ...


class BackendRunner(Runner):
    """A saliq backend: an open one, or a factory called on each activation.

    Deactivation closes the backend; a runner given an open backend cannot be activated
    again after that (it cannot reopen what it did not open), one given a factory can.
    """

    def __init__(self, backend: Backend | Callable[[], Backend], name: str | None = None):
        # An object with infer() is an open backend; a class or a function is a factory.
        opened = hasattr(backend, "infer") and not isinstance(backend, type)
        self._factory = None if opened else backend
        self.backend: Any = backend if opened else None
        self._named = name is not None
        super().__init__(name or getattr(self.backend, "name", None) or "backend")

    @property
    def spec(self) -> ModelSpec | None:
        return getattr(self.backend, "spec", None)

    def _activate(self) -> None:
        if self._factory is not None:
            self.backend = self._factory()
        elif self.backend is None:
            raise BackendClosedError(
                f"runner {self.name!r} closed the backend it was given; pass a factory "
                "(e.g. lambda: saliq.backends.load_backend(path)) to reopen it"
            )
        if not self._named:  # a factory's backend names itself once it exists
            self.name = getattr(self.backend, "name", self.name)

    def _infer(self, feeds: Feeds) -> Outputs:
        return dict(self.backend.infer(dict(feeds)))

    def _deactivate(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.close()


class OnnxRuntimeRunner(BackendRunner):
    """The ONNX Runtime reference: an ``.onnx`` file with its embedded ModelSpec.

    ``providers`` defaults to the CPU provider alone (FP32, deterministic); ``None`` takes the
    best one installed, as ``saliq.load`` does.
    """

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = REFERENCE_PROVIDERS,
        threads: int = 0,
        name: str = "onnxruntime",
    ) -> None:
        self.path = Path(path)

        def open_session() -> Backend:
            from ..backends.onnxruntime import OnnxRuntimeBackend

            chosen = list(providers) if providers is not None else None
            return OnnxRuntimeBackend(self.path, providers=chosen, threads=threads)

        super().__init__(open_session, name=name)


class TorchRunner(BackendRunner):
    """PyTorch: a ``.safetensors`` checkpoint through the torch backend, or an in-memory model
    called ``model(dict_of_inputs) -> dict_of_outputs`` (then ``spec`` is required)."""

    def __init__(
        self,
        model: str | Path | Any,
        spec: ModelSpec | None = None,
        device: str = "cpu",
        threads: int = 0,
        name: str = "torch",
    ) -> None:
        if isinstance(model, (str, Path)):
            path = Path(model)

            def open_checkpoint() -> Backend:
                from ..backends.torch import TorchBackend

                return TorchBackend(path, device=device, threads=threads)

            super().__init__(open_checkpoint, name=name)
            return
        if spec is None:
            raise ValueError("TorchRunner: an in-memory model needs its ModelSpec (spec=...)")
        module = model

        def wrap_module() -> Backend:
            from ..backends.torch import TorchBackend

            return TorchBackend.from_module(module, spec, device)

        super().__init__(wrap_module, name=name)


TORCH_PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


class TorchModuleRunner(Runner):
    """An in-memory PyTorch model on ``device`` at ``precision``, optionally compiled.

    ``model(dict_of_inputs) -> dict_of_outputs`` (the model contract). fp16/bf16 run under
    ``torch.autocast`` (weights stay fp32; convolutions and matrix products in half
    precision, reductions and normalisations in fp32, as ``saliq train`` trains); fp32 on
    CUDA turns TF32 off (process-wide), so it is IEEE fp32 like the CPU reference.
    ``compile=True`` wraps the model in ``torch.compile`` (compiled on the first call of each
    batch size: that call is the warm-up). A model bound for another device is copied, so one
    model serves several runners. :meth:`prepare` copies feeds to the device once;
    :meth:`run_prepared` returns device tensors without waiting; :meth:`infer` returns float32
    host arrays like every runner.
    """

    def __init__(
        self,
        model: Any,
        spec: ModelSpec,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool = False,
        name: str | None = None,
    ) -> None:
        if precision not in TORCH_PRECISIONS:
            raise ValueError(f"precision must be one of {TORCH_PRECISIONS}, got {precision!r}")
        self.model = model
        self._spec = spec
        self.device = device
        self.precision = precision
        self.compile = compile
        self._call: Any = None
        default = f"torch-{'compile-' if compile else ''}{precision}-{device.split(':')[0]}"
        super().__init__(name or default)

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _activate(self) -> None:
        from ..backends.torch import _torch

        torch = _torch()
        if self.on_cuda and self.precision == "fp32":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        params = list(self.model.parameters())
        here = params[0].device if params else torch.device("cpu")
        module = self.model if here == torch.device(self.device) else copy.deepcopy(self.model)
        module = module.to(self.device).eval()
        self._call = torch.compile(module) if self.compile else module

    def prepare(self, feeds: Feeds) -> dict[str, Any]:
        from ..backends.torch import _torch

        torch = _torch()
        return {
            name: torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)).to(
                self.device
            )
            for name in self._spec.inputs
        }

    def run_prepared(self, prepared: Mapping[str, Any]) -> dict[str, Any]:
        from ..backends.torch import _torch

        torch = _torch()
        with torch.inference_mode():
            if self.precision in _AUTOCAST_DTYPES:
                dtype = getattr(torch, _AUTOCAST_DTYPES[self.precision])
                with torch.autocast(self.device.split(":")[0], dtype=dtype):
                    out = self._call(dict(prepared))
            else:
                out = self._call(dict(prepared))
        return {name: out[name] for name in self._spec.outputs}

    def synchronize(self) -> None:
        if self.on_cuda:
            from ..backends.torch import _torch

            _torch().cuda.synchronize(self.device)

    def _infer(self, feeds: Feeds) -> Outputs:
        out = self.run_prepared(self.prepare(feeds))
        return {name: value.float().cpu().numpy() for name, value in out.items()}

    def _deactivate(self) -> None:
        self._call = None


class CallableRunner(Runner):
    """Any function ``feeds -> outputs``; nothing to load or release."""

    def __init__(
        self, fn: Callable[[Feeds], Mapping[str, np.ndarray]], name: str = "callable"
    ) -> None:
        super().__init__(name)
        self.fn = fn

    def _activate(self) -> None:
        pass

    def _infer(self, feeds: Feeds) -> Outputs:
        return {k: np.asarray(v) for k, v in self.fn(feeds).items()}

    def _deactivate(self) -> None:
        pass


def run_batched(runner: Runner, feeds: Feeds, max_batch: int = 16) -> Outputs:
    """Run ``runner`` over all N frames of ``feeds`` in chunks of at most ``max_batch``;
    returns each output concatenated back to ``[N, ...]``. Activates the runner if needed
    (and then deactivates it again)."""
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError(f"max_batch must be in 1..{MAX_BATCH}, got {max_batch}")
    if not feeds:
        raise ValueError("no feeds to run")
    sizes = {name: len(value) for name, value in feeds.items()}
    if len(set(sizes.values())) != 1 or not next(iter(sizes.values())):
        raise ValueError(f"feeds must share one non-zero batch size, got {sizes}")
    total = next(iter(sizes.values()))
    was_active = runner.is_active
    runner.activate()
    try:
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, total, max_batch):
            chunk = {name: value[start : start + max_batch] for name, value in feeds.items()}
            for name, value in runner.infer(chunk).items():
                parts.setdefault(name, []).append(np.asarray(value))
    finally:
        if not was_active:
            runner.deactivate()
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


__all__ = [
    "BackendRunner",
    "CallableRunner",
    "OnnxRuntimeRunner",
    "Runner",
    "TorchModuleRunner",
    "TorchRunner",
    "run_batched",
]
