"""A detector pipeline that owns its engine: its own ONNX Runtime session, letterbox and NMS.

This is the shape of a typical service loop (decode -> letterbox -> session.run -> decode boxes ->
NMS), written as a perflab pipeline: each method is one stage, timed by the harness. Run it with
`perflab run examples/custom_pipeline/yolo_ort.yaml`.
"""

from __future__ import annotations

import cv2
import numpy as np


class YoloOrt:
    def __init__(
        self,
        model: str = "yolo-s",
        size: int = 320,
        conf: float = 0.25,
        iou: float = 0.45,
        threads: int = 1,
    ):
        self.model, self.size, self.conf, self.iou, self.threads = model, size, conf, iou, threads

    def setup(self) -> None:
        """Untimed: find the model (a path, or a perflab built-in name) and open the session."""
        import onnxruntime as ort

        path = self.model
        if not path.endswith(".onnx"):
            from perflab import models

            path = str(models.resolve(path, batch_size=1).path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def make_inputs(self) -> bytes:
        """Untimed: one JPEG frame with a few shapes, decoded in the timed preprocess."""
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        cv2.rectangle(frame, (100, 100), (300, 260), (0, 0, 255), -1)
        return cv2.imencode(".jpg", frame)[1].tobytes()

    def preprocess(self, jpeg: bytes) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        self.ratio = r = min(self.size / h, self.size / w)
        canvas = np.full((self.size, self.size, 3), 114, dtype=np.uint8)
        nh, nw = round(h * r), round(w * r)
        canvas[:nh, :nw] = cv2.resize(img, (nw, nh))
        x = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return np.ascontiguousarray(x)

    def compute(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def postprocess(self, out: np.ndarray) -> list[tuple]:
        pred = out[0].T if out.shape[1] < out.shape[2] else out[0]  # [anchors, 4 + 1 + classes]
        scores = pred[:, 4:5] * pred[:, 5:]
        cls = scores.argmax(1)
        best = scores[np.arange(len(cls)), cls]
        keep = best > self.conf
        boxes, best, cls = pred[keep, :4], best[keep], cls[keep]
        xywh = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, 2:]], 1) / self.ratio
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), best.tolist(), self.conf, self.iou)
        return [(*xywh[i], best[i], cls[i]) for i in np.asarray(idx).reshape(-1)]
