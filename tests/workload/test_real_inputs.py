"""Real inputs for the built-in image pipelines: a folder of JPEG files, a video clip; the
detection count per iteration and the warning on an empty postprocess."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import perflab
from perflab import runner, spec
from perflab.errors import SpecError
from perflab.models import TensorSpec
from perflab.pipelines import ClassifyPipeline, DetectPipeline


def frames(n, w=96, h=72):
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.circle(img, (w // 2, h // 2), 10 + 3 * i, (255, 255, 255), -1)
        out.append(img)
    return out


@pytest.fixture
def jpeg_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(frames(3)):
        cv2.imwrite(str(folder / f"frame{i}.jpg"), img)
    return folder


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 72))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for img in frames(4):
        writer.write(img)
    writer.release()
    return path


IMAGE = (TensorSpec("images", (2, 3, 32, 32), "float32"),)


def test_images_are_read_once_and_cycled_over_the_iterations(jpeg_folder):
    pipe = ClassifyPipeline(IMAGE, batch_size=2, seed=0, options={"images": str(jpeg_folder)})
    raw = pipe.make_inputs()
    assert raw == [p.read_bytes() for p in sorted(jpeg_folder.iterdir())]  # encoded, as read
    batches = [pipe.preprocess(raw)["images"].copy() for _ in range(3)]
    # 3 images, batches of 2: (0, 1), (2, 0), (1, 2): batch 0's first image is batch 1's second
    np.testing.assert_array_equal(batches[0][0], batches[1][1])
    np.testing.assert_array_equal(batches[1][0], batches[2][1])
    assert not np.array_equal(batches[0][0], batches[0][1])


def test_video_frames_feed_the_pipeline(clip):
    pipe = DetectPipeline(IMAGE, batch_size=2, seed=0, options={"video": str(clip)})
    raw = pipe.make_inputs()
    assert len(raw) == 4 and raw[0].shape == (72, 96, 3)
    x = pipe.preprocess(raw)["images"]
    assert x.shape == (2, 3, 32, 32) and x.max() <= 1.0 and x.std() > 0


def test_detect_counts_the_detections_it_keeps():
    pipe = DetectPipeline(
        IMAGE, batch_size=2, seed=0, options={"objectness": False, "layout": "channels_first"}
    )
    # two anchors per image: one confident box, one below the threshold
    pred = np.zeros((2, 6, 2), dtype=np.float32)  # [N, 4 + 2 classes, anchors]
    pred[:, :4, 0] = [16, 16, 8, 8]
    pred[:, 4, 0] = 0.9
    pred[:, 4, 1] = 0.1
    assert pipe.facts() == {}
    for _ in range(3):
        result = pipe.postprocess({"output": pred})
        assert [len(r) for r in result] == [1, 1]
    assert pipe.facts() == {"detections_per_iteration": 2.0}


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: d, "holds no files"),
        (lambda d: (d / "notes.txt").write_text("x") and d, "notes.txt is not a JPEG or PNG file"),
        (lambda d: (d / "fake.jpg").write_text("x") and d, "fake.jpg is not a JPEG or PNG image"),
        (lambda d: d / "absent", "is not a folder"),
    ],
)
def test_bad_image_folders_name_the_file_before_anything_runs(tmp_path, make, fragment):
    folder = tmp_path / "imgs"
    folder.mkdir()
    target = make(folder)
    data = {
        "model": "mobilenetv2",
        "pipeline": "classify",
        "pipeline_options": {"images": str(target)},
    }
    with pytest.raises(SpecError, match=fragment):
        spec.parse(data)


def test_a_missing_video_is_refused_when_the_file_is_read(tmp_path):
    data = {"model": "yolo-s", "pipeline": "detect", "pipeline_options": {"video": "none.mp4"}}
    with pytest.raises(SpecError, match="none.mp4 does not exist"):
        spec.parse(data)


def test_classify_and_detect_run_on_images_and_video_and_store_the_count(
    tmp_path, jpeg_folder, clip
):
    data = {
        "study": "real",
        "backend": "ort-cpu",
        "options": {"threads": 1},
        "warmup": {"iterations": 1},
        "measure": {"iterations": 4},
        "sweep": [
            {"model": ["mobilenetv2"], "pipeline": ["classify"],
             "pipeline_options.images": [str(jpeg_folder)]},
            {"model": ["yolo-s"], "pipeline": ["detect"],
             "pipeline_options.video": [str(clip)]},
            {"model": ["yolo-s"], "pipeline": ["detect"],
             "pipeline_options.images": [str(jpeg_folder)]},
        ],
    }  # fmt: skip
    result = runner.run_study(spec.parse(data), tmp_path / "out", isolate=False)
    assert [r["status"] for r in result.rows] == ["ok"] * 3, [r.get("error") for r in result.rows]
    res = perflab.open(tmp_path / "out")
    runs = res.runs.set_index("pipeline")
    detect = runs.loc[["detect"]]
    assert detect["detections_per_iteration"].notna().all()
    assert (detect["detections_per_iteration"] >= 0).all()
    assert np.isnan(runs.loc["classify", "detections_per_iteration"])
    # an untrained detector on these frames keeps no box: the warning says postprocess timed
    # an empty NMS
    empty = detect[detect["detections_per_iteration"] == 0]
    warned = res.warnings()
    assert set(warned.loc[warned["warning"] == "empty_postprocess", "run_id"]) == set(
        empty["run_id"]
    )
