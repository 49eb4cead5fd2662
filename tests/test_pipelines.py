"""Tests for perflab.pipelines: shapes, numerics of pre/postprocessing, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perflab import pipelines
from perflab.errors import SpecError, Unsupported
from perflab.models import TensorSpec
from perflab.pipelines import PIPELINES, create, letterbox_geometry, nms, softmax, top_k

REALDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def image_spec(n: int = 1, c: int = 3, h: int = 224, w: int = 224, name: str = "input"):
    return [TensorSpec(name, (n, c, h, w), "float32")]


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def solid_bgr(bgr: tuple[int, int, int], width: int = 640, height: int = 480) -> np.ndarray:
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = bgr
    return img


# ----------------------------------------------------------------------------------------------
# create() and validation


def test_pipeline_names():
    assert PIPELINES == ("raw", "classify", "detect")


def test_unknown_pipeline_lists_valid_names():
    with pytest.raises(SpecError, match=r"unknown pipeline 'segment'.*raw, classify, detect"):
        create("segment", image_spec(), batch_size=1)


def test_image_pipeline_on_text_model_is_unsupported():
    spec = [TensorSpec("input_ids", (8, 128), "int64")]
    with pytest.raises(Unsupported) as err:
        create("classify", spec, batch_size=8)
    assert str(err.value) == (
        "pipeline 'classify' needs one NCHW image input with 1 or 3 channels; "
        "model input 'input_ids' is int64 [8, 128]"
    )


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        (  # two inputs
            [
                TensorSpec("input_ids", (1, 8), "int64"),
                TensorSpec("attention_mask", (1, 8), "int64"),
            ],
            "model has 2 inputs: 'input_ids' int64 [1, 8], 'attention_mask' int64 [1, 8]",
        ),
        ([TensorSpec("x", (1, 224, 224, 3), "float32")], "'x' is float32 [1, 224, 224, 3]"),  # NHWC
        ([TensorSpec("x", (1, 4, 64, 64), "float32")], "'x' is float32 [1, 4, 64, 64]"),
        ([TensorSpec("x", (1, 3, 64, 64), "uint8")], "'x' is uint8 [1, 3, 64, 64]"),
    ],
)
@pytest.mark.parametrize("name", ["classify", "detect"])
def test_image_pipelines_reject_non_image_inputs(name, inputs, fragment):
    with pytest.raises(Unsupported, match=rf"pipeline '{name}' needs one NCHW image input") as err:
        create(name, inputs, batch_size=1)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_batch_size_must_match_the_model_input():
    with pytest.raises(Unsupported, match=r"batch_size 8.*'input' is float32 \[1, 3, 224, 224\]"):
        create("classify", image_spec(n=1), batch_size=8)


def test_detect_needs_three_channels():
    with pytest.raises(Unsupported, match="3-channel"):
        create("detect", image_spec(c=1, h=64, w=64), batch_size=1)


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("classify", {"topk": 5}, "pipeline 'classify': unknown option 'topk'; valid options:"),
        ("classify", {"resize": "squash"}, "resize='squash': expected one of center_crop, direct"),
        ("classify", {"image_size": "640*480"}, "image_size='640*480'"),
        ("classify", {"mean": [0.5, 0.5]}, "mean=[0.5, 0.5]: expected a list of 3"),
        ("classify", {"std": [0.2, 0.0, 0.2]}, "expected positive numbers"),
        ("detect", {"conf_threshold": 1.5}, "conf_threshold=1.5: expected a number in [0.0, 1.0]"),
        ("detect", {"layout": "nchw"}, "expected one of auto, channels_first, channels_last"),
        ("detect", {"strides": "8,16"}, "strides='8,16'"),
        ("detect", {"max_detections": 0}, "max_detections=0: expected an integer >= 1"),
        ("raw", {"vocab_size": True}, "vocab_size=True"),
    ],
)
def test_bad_options_name_value_and_choices(name, options, fragment):
    with pytest.raises(SpecError) as err:
        create(name, image_spec(), batch_size=1, options=options)
    assert fragment in str(err.value)


def test_bad_batch_size():
    with pytest.raises(SpecError, match="batch_size must be a positive integer, got 0"):
        create("raw", image_spec(), batch_size=0)


def test_created_pipelines_satisfy_the_protocol():
    for name in PIPELINES:
        pipe = create(name, image_spec(h=64, w=64), batch_size=1)
        # Built-ins run on a perflab backend: pre- and postprocess, never their own compute.
        methods = pipelines.stage_methods(pipe)
        assert methods["preprocess"] and methods["postprocess"] and methods["compute"] is None
        assert pipe.name == name


# ----------------------------------------------------------------------------------------------
# raw


def text_inputs():
    return [
        TensorSpec("input_ids", (2, 16), "int64"),
        TensorSpec("attention_mask", (2, 16), "int64"),
        TensorSpec("token_type_ids", (2, 16), "int64"),
        TensorSpec("pixel_values", (2, 3, 8, 8), "float16"),
    ]


def test_raw_shapes_dtypes_and_value_ranges():
    pipe = create("raw", text_inputs(), batch_size=2, seed=3, options={"vocab_size": 50})
    raw = pipe.make_inputs()
    feeds = pipe.preprocess(raw)
    assert feeds is raw  # pure engine numbers: nothing happens in preprocess
    assert {k: (v.shape, v.dtype.name) for k, v in feeds.items()} == {
        "input_ids": ((2, 16), "int64"),
        "attention_mask": ((2, 16), "int64"),
        "token_type_ids": ((2, 16), "int64"),
        "pixel_values": ((2, 3, 8, 8), "float16"),
    }
    assert feeds["input_ids"].min() >= 0 and feeds["input_ids"].max() < 50
    assert (feeds["attention_mask"] == 1).all()
    assert (feeds["token_type_ids"] == 0).all()
    assert abs(float(feeds["pixel_values"].astype(np.float32).std()) - 1.0) < 0.3
    outputs = {"logits": np.ones((2, 3), np.float32)}
    assert pipe.postprocess(outputs) is outputs


def test_raw_default_vocab_keeps_token_ids_small():
    pipe = create("raw", [TensorSpec("ids", (4, 512), "int32")], batch_size=4)
    ids = pipe.make_inputs()["ids"]
    assert ids.dtype == np.int32 and 0 <= ids.min() and ids.max() < 1000


@pytest.mark.parametrize("dtype", ["str", "bfloat16"])
def test_raw_rejects_dtypes_it_cannot_fill(dtype):
    with pytest.raises(Unsupported) as err:
        create("raw", [TensorSpec("text", (1,), dtype)], batch_size=1)
    assert str(err.value) == (
        f"pipeline 'raw' cannot make data for input 'text' ({dtype} [1]); "
        "supported dtypes: float16/32/64, (u)int8..64, bool"
    )


def test_raw_determinism_and_calibration_are_distinct():
    a = create("raw", text_inputs(), batch_size=2, seed=7)
    b = create("raw", text_inputs(), batch_size=2, seed=7)
    c = create("raw", text_inputs(), batch_size=2, seed=8)
    for key in ("input_ids", "pixel_values"):
        np.testing.assert_array_equal(a.make_inputs()[key], b.make_inputs()[key])
        assert not np.array_equal(a.make_inputs()[key], c.make_inputs()[key])
    calib = a.calibration_batches(3)
    assert len(calib) == 3
    timed = a.make_inputs()["input_ids"]
    ids = [batch["input_ids"] for batch in calib]
    assert not any(np.array_equal(timed, x) for x in ids)
    assert not np.array_equal(ids[0], ids[1])
    np.testing.assert_array_equal(ids[2], b.calibration_batches(3)[2]["input_ids"])


# ----------------------------------------------------------------------------------------------
# synthetic images


def test_synthetic_images_formats_size_and_determinism():
    imgs = pipelines.synthetic_images(4, width=320, height=240, image_format="mixed", seed=5)
    assert [img[:2] for img in imgs] == [b"\xff\xd8", b"\x89P", b"\xff\xd8", b"\x89P"]
    decoded = cv2.imdecode(np.frombuffer(imgs[0], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 320, 3)
    assert decoded.std() > 10  # a scene, not a flat colour
    assert pipelines.synthetic_images(2, width=320, height=240, seed=5)[1] != imgs[0]
    again = pipelines.synthetic_images(4, width=320, height=240, image_format="mixed", seed=5)
    assert again == imgs


# ----------------------------------------------------------------------------------------------
# classify


def test_classify_shapes_and_raw_inputs():
    pipe = create("classify", image_spec(n=2), batch_size=2, options={"image_size": "1280x720"})
    raw = pipe.make_inputs()
    assert len(raw) == 2 and all(isinstance(x, bytes) for x in raw)
    assert cv2.imdecode(np.frombuffer(raw[0], np.uint8), cv2.IMREAD_COLOR).shape == (720, 1280, 3)
    feeds = pipe.preprocess(raw)
    assert list(feeds) == ["input"]
    assert feeds["input"].shape == (2, 3, 224, 224) and feeds["input"].dtype == np.float32
    assert np.isfinite(feeds["input"]).all()


def test_classify_reuses_its_batch_array():
    pipe = create("classify", image_spec(n=1, h=32, w=32), batch_size=1)
    raw = pipe.make_inputs()
    assert pipe.preprocess(raw)["input"] is pipe.preprocess(raw)["input"]


@pytest.mark.parametrize("resize", ["center_crop", "direct"])
def test_classify_normalizes_a_solid_colour(resize):
    rgb = np.array([200, 100, 50])
    pipe = create("classify", image_spec(n=2), batch_size=2, options={"resize": resize})
    raw = [png(solid_bgr((50, 100, 200))), png(solid_bgr((50, 100, 200), 300, 500))]
    x = pipe.preprocess(raw)["input"]
    expected = (rgb / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(
        x, np.broadcast_to(expected[None, :, None, None], x.shape), atol=1e-5
    )


def test_classify_channel_order_bgr_and_custom_stats():
    pipe = create(
        "classify",
        image_spec(h=8, w=8),
        batch_size=1,
        options={"channel_order": "bgr", "mean": [0, 0, 0], "std": [1, 1, 1]},
    )
    x = pipe.preprocess([png(solid_bgr((50, 100, 200), 64, 48))])["input"]
    np.testing.assert_allclose(x[0, :, 0, 0], np.array([50, 100, 200]) / 255, atol=1e-6)


def test_classify_float16_model_matches_float32():
    raw = create("classify", image_spec(h=32, w=32), batch_size=1).make_inputs()
    x32 = create("classify", image_spec(h=32, w=32), batch_size=1).preprocess(raw)["input"]
    half = [TensorSpec("input", (1, 3, 32, 32), "float16")]
    x16 = create("classify", half, batch_size=1).preprocess(raw)["input"]
    assert x16.dtype == np.float16
    np.testing.assert_allclose(x16.astype(np.float32), x32, atol=1e-2)


def test_classify_grayscale_model():
    pipe = create("classify", image_spec(c=1, h=28, w=28, name="Input3"), batch_size=1)
    feeds = pipe.preprocess(pipe.make_inputs())
    assert feeds["Input3"].shape == (1, 1, 28, 28)
    gray = pipe.preprocess([png(solid_bgr((128, 128, 128)))])["Input3"]
    np.testing.assert_allclose(gray, (128 / 255 - 0.449) / 0.226, atol=1e-5)


def test_center_crop_differs_from_direct_resize():
    # A red band in the leftmost 100 of 640 columns lies outside the central crop
    # (640x480 -> 341x256 -> crop starts at column 58, i.e. original column ~109).
    img = solid_bgr((128, 128, 128))
    img[:, :100] = (0, 0, 255)
    raw = [png(img)]
    opts = {"mean": [0, 0, 0], "std": [1, 1, 1]}
    crop = create("classify", image_spec(), batch_size=1, options=opts).preprocess(raw)["input"]
    direct = create("classify", image_spec(), batch_size=1, options={**opts, "resize": "direct"})
    stretched = direct.preprocess(raw)["input"]
    assert crop[0, 0].max() < 0.51  # red channel stays gray everywhere
    assert stretched[0, 0, :, :30].min() > 0.99  # red survives at the left edge
    assert stretched[0, 0, :, 40:].max() < 0.51


def test_classify_non_square_model_input():
    pipe = create("classify", image_spec(n=2, h=48, w=192, name="x"), batch_size=2)
    assert pipe.preprocess(pipe.make_inputs())["x"].shape == (2, 3, 48, 192)


def test_softmax_is_stable_and_exact():
    logits = np.array([[1000.0, 999.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    p = softmax(logits)
    assert np.isfinite(p).all()
    e = np.exp(np.array([0.0, -1.0]))
    np.testing.assert_allclose(p[0, :2], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)


def test_top_k_on_known_scores():
    scores = np.array([[0.1, 0.5, 0.2, 0.9, 0.05, 0.3, 0.7]])
    idx, val = top_k(scores, 5)
    assert idx.tolist() == [[3, 6, 1, 5, 2]]
    np.testing.assert_allclose(val, [[0.9, 0.7, 0.5, 0.3, 0.2]])
    idx, _ = top_k(scores[:, :3], 5)  # fewer classes than k
    assert idx.tolist() == [[1, 2, 0]]


def test_classify_postprocess_top5_on_known_logits():
    pipe = create("classify", image_spec(n=2), batch_size=2)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 1000)).astype(np.float32)
    logits[0, [7, 42, 999, 0, 500]] = [10, 9, 8, 7, 6]
    logits[1, [3, 1, 4, 1000 - 5, 9]] = [20, 19.5, 19, 18.5, 18]
    result = pipe.postprocess({"logits": logits[:, :, None, None]})  # [N, K, 1, 1] head
    assert [c for c, _ in result[0]] == [7, 42, 999, 0, 500]
    assert [c for c, _ in result[1]] == [3, 1, 4, 995, 9]
    ref = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    for row, items in enumerate(result):
        for cls, prob in items:
            assert isinstance(cls, int) and isinstance(prob, float)
            assert prob == pytest.approx(ref[row, cls], rel=1e-5)


def test_classify_postprocess_options():
    pipe = create(
        "classify",
        image_spec(),
        batch_size=1,
        options={"top_k": 2, "softmax": False, "output": "prob"},
    )
    outputs = {"aux": np.zeros((1, 3)), "prob": np.array([[0.2, 0.5, 0.3]], np.float32)}
    result = pipe.postprocess(outputs)
    assert [c for c, _ in result[0]] == [1, 2]
    assert result[0][0][1] == pytest.approx(0.5)
    with pytest.raises(Unsupported, match="output='prob' is not a model output; outputs: aux"):
        pipe.postprocess({"aux": np.zeros((1, 3))})


def test_classify_determinism_and_calibration():
    a = create("classify", image_spec(n=2, h=64, w=64), batch_size=2, seed=11)
    b = create("classify", image_spec(n=2, h=64, w=64), batch_size=2, seed=11)
    assert a.make_inputs() == b.make_inputs()
    assert a.make_inputs() != create("classify", image_spec(n=2, h=64, w=64), batch_size=2,
                                     seed=12).make_inputs()  # fmt: skip
    timed = a.preprocess(a.make_inputs())["input"].copy()
    np.testing.assert_array_equal(timed, b.preprocess(b.make_inputs())["input"])
    calib = a.calibration_batches(2)
    assert len(calib) == 2
    assert calib[0]["input"] is not a._batch and calib[0]["input"] is not calib[1]["input"]
    assert not np.array_equal(calib[0]["input"], timed)
    assert not np.array_equal(calib[0]["input"], calib[1]["input"])
    np.testing.assert_array_equal(calib[1]["input"], b.calibration_batches(2)[1]["input"])


# ----------------------------------------------------------------------------------------------
# detect


def yolo_output(rows, num_classes: int, anchors: int = 64, layout: str = "channels_first"):
    """A [1, 5+C, A] (or [1, A, 5+C]) output holding `rows` = (cx, cy, w, h, obj, cls, p)."""
    out = np.zeros((anchors, 5 + num_classes), np.float32)
    for i, (cx, cy, w, h, obj, cls, p) in enumerate(rows):
        out[i, :5] = (cx, cy, w, h, obj)
        out[i, 5 + cls] = p
    out = out[None]
    return out.transpose(0, 2, 1).copy() if layout == "channels_first" else out


def test_detect_shapes_and_letterbox_padding():
    pipe = create("detect", image_spec(n=2, h=320, w=320, name="images"), batch_size=2)
    feeds = pipe.preprocess(pipe.make_inputs())
    x = feeds["images"]
    assert x.shape == (2, 3, 320, 320) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # 640x480 -> 320x240 centred: 40 rows of gray above and below.
    np.testing.assert_allclose(x[:, :, :40], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(x[:, :, 280:], 114 / 255, atol=1e-6)
    assert x[:, :, 40:280].std() > 0.05


def test_letterbox_geometry():
    assert letterbox_geometry((480, 640), (320, 320)) == (0.5, 0, 40, 320, 240)
    assert letterbox_geometry((480, 640), (320, 320), "top_left") == (0.5, 0, 0, 320, 240)
    assert letterbox_geometry((720, 1280), (640, 640)) == (0.5, 0, 140, 640, 360)


@pytest.mark.parametrize("pad_position", ["center", "top_left"])
def test_detect_letterbox_round_trip_of_a_known_box(pad_position):
    # A white box on black at known original coordinates; find it in the model input and feed
    # that location back as a detection: it must come back in original-image pixels.
    x1, y1, x2, y2 = 200, 120, 360, 300
    img = np.zeros((480, 640, 3), np.uint8)
    img[y1:y2, x1:x2] = 255
    pipe = create(
        "detect",
        image_spec(h=320, w=320),
        batch_size=1,
        options={"pad_position": pad_position},
    )
    tensor = pipe.preprocess([png(img)])["input"][0, 0]
    ys, xs = np.nonzero(tensor > 0.9)
    bx1, by1, bx2, by2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    row = ((bx1 + bx2) / 2, (by1 + by2) / 2, bx2 - bx1, by2 - by1, 0.9, 2, 0.9)
    (det,) = pipe.postprocess({"out": yolo_output([row], num_classes=3)})[0]
    np.testing.assert_allclose(det[:4], (x1, y1, x2, y2), atol=2.0)  # resampling blurs the edge
    assert det[4] == pytest.approx(0.81) and det[5] == 2
    # The exact inverse of the recorded geometry on a box given in model-input pixels.
    top = 40 if pad_position == "center" else 0
    row = (160, top + 100, 100, 60, 0.9, 0, 1.0)
    (det,) = pipe.postprocess({"out": yolo_output([row], num_classes=3)})[0]
    np.testing.assert_allclose(det[:4], (220, 140, 420, 260), atol=1e-4)


def test_nms_same_class_overlap_keeps_one_different_classes_keep_both():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 110, 110], [0, 0, 100, 100], [300, 300, 350, 350]])
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes[:2], scores[:2], 0.45).tolist() == [1]  # IoU 0.68: the better one stays
    assert nms(boxes[:2], scores[:2], 0.7).tolist() == [1, 0]  # below the threshold: both stay
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, 0.45, classes).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.45, classes, max_output=2).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.45).tolist() == []


def test_nms_keeps_classes_apart_with_negative_coordinates():
    boxes = np.array([[-500, -500, 10, 10], [-500, -500, 10, 10]])
    assert nms(boxes, np.array([0.9, 0.8]), 0.45, np.array([0, 1])).tolist() == [0, 1]


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_detect_postprocess_nms_on_hand_built_output(layout):
    pipe = create("detect", image_spec(h=320, w=320), batch_size=1)  # identity geometry
    rows = [
        (60, 60, 100, 100, 0.9, 0, 0.9),  # class 0, best
        (65, 65, 100, 100, 0.9, 0, 0.8),  # class 0, overlaps the best -> suppressed
        (62, 62, 100, 100, 0.9, 1, 0.85),  # class 1, same place -> kept
        (250, 250, 40, 40, 0.9, 0, 0.7),  # class 0, elsewhere -> kept
        (200, 60, 40, 40, 0.2, 1, 1.0),  # objectness below threshold -> dropped
        (150, 150, 40, 40, 0.5, 2, 0.4),  # 0.5 * 0.4 = 0.2 < 0.25 -> dropped
    ]
    dets = pipe.postprocess({"out": yolo_output(rows, num_classes=3, layout=layout)})[0]
    assert [(d[5], round(d[4], 4)) for d in dets] == [(0, 0.81), (1, 0.765), (0, 0.63)]
    assert dets[0][:4] == pytest.approx((10, 10, 110, 110))
    assert dets[2][:4] == pytest.approx((230, 230, 270, 270))


def test_detect_layout_detection_and_override():
    pipe = create("detect", image_spec(h=320, w=320), batch_size=1)
    square = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(
        Unsupported, match=r"cannot tell channels from anchors in output \[1, 8, 8\]"
    ):
        pipe.postprocess({"out": square})
    forced = create("detect", image_spec(h=320, w=320), batch_size=1,
                    options={"layout": "channels_last"})  # fmt: skip
    assert forced.postprocess({"out": square}) == [[]]
    with pytest.raises(Unsupported, match=r"expects output \[1, 4\+1\+classes, anchors\]"):
        pipe.postprocess({"out": np.zeros((1, 85), np.float32)})


def test_detect_without_objectness_channel():
    pipe = create("detect", image_spec(h=320, w=320), batch_size=1, options={"objectness": False})
    out = np.zeros((1, 4 + 2, 100), np.float32)  # YOLOv8: [N, 4+C, A]
    out[0, :, 0] = (50, 50, 20, 20, 0.1, 0.6)
    out[0, :, 1] = (150, 50, 20, 20, 0.2, 0.1)
    dets = pipe.postprocess({"out": out})[0]
    assert len(dets) == 1 and dets[0][5] == 1 and dets[0][4] == pytest.approx(0.6)


def test_detect_caps_candidates_and_detections():
    rows = [
        (20 + 40 * (i % 7), 20 + 40 * (i // 7), 10, 10, 0.9, 0, 0.5 + i / 100) for i in range(40)
    ]
    out = yolo_output(rows, num_classes=1)
    capped = create("detect", image_spec(h=320, w=320), batch_size=1,
                    options={"max_detections": 5})  # fmt: skip
    dets = capped.postprocess({"out": out})[0]
    assert len(dets) == 5
    assert [d[4] for d in dets] == sorted((d[4] for d in dets), reverse=True)
    assert dets[0][4] == pytest.approx(0.9 * 0.89)
    few = create("detect", image_spec(h=320, w=320), batch_size=1, options={"max_candidates": 3})
    assert [round(d[4], 4) for d in few.postprocess({"out": out})[0]] == [
        round(0.9 * s, 4) for s in (0.89, 0.88, 0.87)
    ]


def test_detect_yolox_grid_decode():
    opts = {"box_decode": "yolox", "pad_position": "top_left"}
    pipe = create("detect", image_spec(h=64, w=64), batch_size=1, options=opts)
    anchors = 8 * 8 + 4 * 4 + 2 * 2  # strides 8, 16, 32 on 64x64
    out = np.zeros((1, anchors, 6), np.float32)
    # Stride-16 cell (x=2, y=1) is anchor 64 + 1*4 + 2 = 70.
    out[0, 70] = (0.5, 0.25, np.log(2.0), 0.0, 0.9, 1.0)
    (det,) = pipe.postprocess({"output": out})[0]
    cx, cy, w, h = (2 + 0.5) * 16, (1 + 0.25) * 16, 2.0 * 16, 1.0 * 16
    np.testing.assert_allclose(det[:4], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), atol=1e-4)
    with pytest.raises(Unsupported, match="expects 84 anchors; output \\[1, 100, 6\\] has 100"):
        pipe.postprocess({"output": np.zeros((1, 100, 6), np.float32)})


def test_detect_calibration_leaves_timed_geometry_alone():
    pipe = create("detect", image_spec(n=2, h=96, w=96), batch_size=2, seed=1,
                  options={"image_size": [320, 180]})  # fmt: skip
    timed = pipe.preprocess(pipe.make_inputs())["input"].copy()
    geometry = pipe._geometry.copy()
    calib = pipe.calibration_batches(2)
    np.testing.assert_array_equal(pipe._geometry, geometry)
    assert calib[0]["input"].shape == (2, 3, 96, 96)
    assert not np.array_equal(calib[0]["input"], timed)
    again = create("detect", image_spec(n=2, h=96, w=96), batch_size=2, seed=1,
                   options={"image_size": [320, 180]})  # fmt: skip
    np.testing.assert_array_equal(again.preprocess(again.make_inputs())["input"], timed)


# ----------------------------------------------------------------------------------------------
# Real models (third-party files, skipped when ../shared/realdata is absent)


def yolox_reference(output: np.ndarray, ratio: float, conf: float, iou: float) -> np.ndarray:
    """YOLOX's own demo postprocess (grid decode, obj * cls, per-class NMS), written out flatly."""
    grids, strides = [], []
    for s in (8, 16, 32):
        n = 416 // s
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    pred = output[0].astype(np.float64)
    xy = (pred[:, :2] + np.concatenate(grids)) * np.concatenate(strides)
    wh = np.exp(pred[:, 2:4]) * np.concatenate(strides)
    boxes = np.concatenate((xy - wh / 2, xy + wh / 2), 1) / ratio
    cls = pred[:, 5:].argmax(1)
    score = pred[:, 4] * pred[np.arange(len(pred)), 5 + cls]
    rows = []
    for c in np.unique(cls[score > conf]):
        sel = np.flatnonzero((cls == c) & (score > conf))
        order = sel[np.argsort(-score[sel], kind="stable")]
        while order.size:
            i, rest = order[0], order[1:]
            rows.append((*boxes[i], score[i], c))
            lt = np.maximum(boxes[i, :2], boxes[rest, :2])
            rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
            order = rest[inter / (area[i] + area[rest] - inter) <= iou]
    rows.sort(key=lambda r: -r[4])
    return np.array(rows).reshape(-1, 6)


def real_model_session(name: str):
    """An ONNX Runtime CPU session of a model in the real-data folder (skips when absent)."""
    model = REALDATA / "models" / name
    if not model.exists():
        pytest.skip(f"{model} is absent")
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


@pytest.mark.realdata
def test_yolox_nano_through_detect():
    sess = real_model_session("yolox_nano.onnx")
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.shape) == ("images", [1, 3, 416, 416])
    options = {
        "channel_order": "bgr",  # YOLOX trains on BGR 0..255 with top-left padding
        "input_scale": 1.0,
        "pad_position": "top_left",
        "box_decode": "yolox",
        "conf_threshold": 0.01,  # synthetic scenes hold none of its 3 classes; keep weak boxes
    }
    found = 0
    for seed in range(3):
        pipe = create("detect", [TensorSpec("images", (1, 3, 416, 416), "float32")],
                      batch_size=1, seed=seed, options=options)  # fmt: skip
        feeds = pipe.preprocess(pipe.make_inputs())
        (output,) = sess.run(None, feeds)
        assert output.shape == (1, 3549, 8)
        dets = pipe.postprocess({"output": output})[0]
        ref = yolox_reference(output, ratio=416 / 640, conf=0.01, iou=0.45)
        ref[:, [0, 2]] = ref[:, [0, 2]].clip(0, 640)
        ref[:, [1, 3]] = ref[:, [1, 3]].clip(0, 480)
        got = np.array(dets, dtype=np.float64).reshape(-1, 6)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-2)
        found += len(dets)
    assert found > 0


@pytest.mark.realdata
def test_mnist_through_classify():
    sess = real_model_session("mnist-8.onnx")
    pipe = create("classify", [TensorSpec("Input3", (1, 1, 28, 28), "float32")], batch_size=1)
    (logits,) = sess.run(None, pipe.preprocess(pipe.make_inputs()))
    (result,) = pipe.postprocess({"Plus214_Output_0": logits})
    assert len(result) == 5 and all(0 <= c < 10 for c, _ in result)
    probs = [p for _, p in result]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_the_spec_knows_the_same_built_in_pipelines():
    from perflab import spec

    assert spec.PIPELINES == PIPELINES
