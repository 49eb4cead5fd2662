"""Time a loop you already have, with no experiment file: `python record_loop.py OUT`.

The same YOLO loop as yolo_ort.py, written as a plain script; `perflab.record` turns it into an
ordinary study that `perflab show OUT`, `perflab report OUT` and `perflab.open(OUT)` read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import perflab

sys.path.insert(0, str(Path(__file__).parent))
from yolo_ort import YoloOrt

out = sys.argv[1] if len(sys.argv) > 1 else "data/record-yolo"
yolo = YoloOrt(model="yolo-s")
yolo.setup()
frame = yolo.make_inputs()

with perflab.record("record-yolo", out=out, backend="ort-session", warmup=5) as rec:
    for _ in range(35):
        with rec.iteration():
            with rec.stage("preprocess"):
                x = yolo.preprocess(frame)
            with rec.stage("compute"):
                y = yolo.compute(x)
            with rec.stage("postprocess"):
                boxes = yolo.postprocess(y)
print(f"recorded {out}")
