"""Requests in flight in throughput mode, as the GPU backends (trt, torch-cuda) keep them.

A request holds one slot of a `cuda.SlotPool` from `submit` until `wait`. `submit_on_slot` is the
bookkeeping both backends share around their own enqueue: take the next slot, time the enqueue
as `enqueue`, and give the slot back if the enqueue fails, so a failed request never holds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perflab.timing import ENQUEUE_CODE

if TYPE_CHECKING:
    from perflab.cuda import SlotPool
    from perflab.timing import Recorder


@dataclass(frozen=True)
class Request:
    """The handle `submit` returns and `wait` takes: the request's slot and iteration."""

    slot: int
    iteration: int


def submit_on_slot(pool: SlotPool, rec: Recorder, enqueue: Callable[[int], None]) -> Request:
    """Run `enqueue(slot)` on the next free slot for the recorder's iteration, timed as
    `enqueue`; the slot is released again when it raises."""
    k = pool.acquire(rec.iteration)
    t = rec.begin(ENQUEUE_CODE)
    try:
        enqueue(k)
    except BaseException:
        pool.release(k)
        raise
    rec.end(ENQUEUE_CODE, t)
    return Request(k, rec.iteration)
