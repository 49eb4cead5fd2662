"""The stage and phase vocabulary: names fixed by the design contract, and the one display order.

Names are NVTX range names, parquet values and plot labels alike. `STAGES` is the stored order
(the recorder's stage codes index it); `stage_rank` is the order every table and figure shows.
"""

from __future__ import annotations

#: The stages that tile one iteration, in pipeline order; e2e minus their sum is the harness gap.
ITERATION_STAGES: tuple[str, ...] = ("preprocess", "h2d", "compute", "d2h", "postprocess")
E2E = "e2e"
#: The iteration stages a device times (CUDA events around the copies and the engine call; the
#: stages whose samples may carry device_ns), in stream order.
DEVICE_STAGES: tuple[str, ...] = ("h2d", "compute", "d2h")
#: The copies between host and device memory.
TRANSFER_STAGES: tuple[str, ...] = ("h2d", "d2h")
#: The iteration stages that run only on the host: the pipeline's own code around the engine.
HOST_STAGES: tuple[str, ...] = ("preprocess", "postprocess")
#: Timed inside compute (the host's share of launching it): never added to a sum of stages.
ENQUEUE = "enqueue"
#: Derived, not recorded: e2e minus the sum of the iteration stages.
GAP = "gap"
STAGES: tuple[str, ...] = (*ITERATION_STAGES, E2E, ENQUEUE)
NESTED_STAGES: tuple[str, ...] = (ENQUEUE,)
SETUP_STAGES: tuple[str, ...] = ("load", "build", "first")
PHASES: tuple[str, ...] = ("warmup", "measure")

#: Shown order: the iteration stages, the gap that completes them to e2e, the nested enqueue, e2e
#: (the total) last, then the setup stages; any other name after these, alphabetically.
DISPLAY_ORDER: tuple[str, ...] = (*ITERATION_STAGES, GAP, ENQUEUE, E2E, *SETUP_STAGES)


def stage_rank(stage: object) -> tuple[int, str]:
    """Sort key putting stages in DISPLAY_ORDER and anything else after them."""
    name = str(stage)
    return (DISPLAY_ORDER.index(name) if name in DISPLAY_ORDER else len(DISPLAY_ORDER), name)
