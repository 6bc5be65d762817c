"""onnxruntime session construction: explicit providers, one place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (the Batch job's GPU image), CPU always last."""
    available = ort.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


def create_session(
    model: Path,
    *,
    providers: Sequence[str] | None = None,
    intra_op_threads: int = 0,
) -> ort.InferenceSession:
    """Build an inference session with the settings measured to be fastest for these models.

    ``ORT_ENABLE_ALL`` is applied when the session loads (2.5x faster than EXTENDED at run time); it is
    not saved to disk because an ALL-optimised file is tied to the CPU it was made on. The memory arena
    stays on (turning it off cost 30% on large photos). ``intra_op_threads=0`` lets onnxruntime use one
    thread per physical core.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    chosen = list(providers) if providers is not None else default_providers()
    if CUDA in chosen and hasattr(ort, "preload_dlls"):
        # The GPU image takes CUDA and cuDNN from NVIDIA's pip wheels: load them before the session does.
        ort.preload_dlls()
    return ort.InferenceSession(str(model), sess_options=options, providers=chosen)
