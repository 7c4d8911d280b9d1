"""The shipped default model: loads by name, agrees across backends, ranks severity."""

import cv2
import numpy as np
import pytest

import saliq
from saliq.train.data.distortions import apply_distortion


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return np.ascontiguousarray(data.coffee())  # RGB, not a training photo


@pytest.fixture(scope="module")
def default():
    return saliq.load("default")


def test_loads_by_name_with_spec(default):
    assert default.spec.name == "saliq-sgdnet-views-lite0"
    assert default.backend.name == "onnxruntime"
    assert default.spec.inputs == ("image", "crops", "crop_weights")
    assert default.spec.preprocessing_version == 2
    # the defect-type head (issue 11): a second exported output, its classes in the spec
    assert default.spec.outputs[-1] == "defect_probs"
    assert default.spec.defect_classes[0] == "none" and "noise" in default.spec.defect_classes


@pytest.mark.parametrize(
    ("kind", "defect"),
    [("gaussian_noise", "noise"), ("defocus_blur", "blur"), ("jpeg", "compression")],
)
def test_defect_head_names_a_strong_defect(default, photo, kind, defect):
    # a native-resolution defect at level 4 on a photo it never saw (skimage's coffee)
    frame = apply_distortion(photo, kind, 4, np.random.default_rng(0))
    result = default.assess(frame, color="RGB")
    assert result.defect[0] == defect, result.outputs["defect_probs"]


@pytest.mark.parametrize("kind", ["defocus_blur", "gaussian_noise", "jpeg", "underexposure"])
def test_scores_fall_with_severity(default, photo, kind):
    rng = np.random.default_rng(0)
    frame = cv2.resize(photo, (224, 224), interpolation=cv2.INTER_AREA)
    frames = [frame] + [apply_distortion(frame, kind, lv, rng) for lv in (1, 3, 5)]
    scores = [r.score for r in default.assess(frames, color="RGB")]
    assert scores[0] > scores[2] > scores[3], scores


def test_torch_checkpoint_matches_onnx(default, photo):
    torch_model = saliq.load("default", backend="torch")
    a = default.assess(photo, color="RGB")
    b = torch_model.assess(photo, color="RGB")
    assert a.score == pytest.approx(b.score, abs=1e-4)
    np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-3)


def test_native_and_python_preprocessing_give_the_same_scores(default, photo):
    """The model was trained through one implementation; both must score it alike."""
    from saliq.preprocess import Preprocessor

    scores = []
    for implementation in ("native", "python"):
        pre = Preprocessor.from_spec(default.spec, implementation=implementation)
        inputs = {k: v for k, v in pre(photo, fmt="RGB").items() if k in default.spec.inputs}
        scores.append(float(default.backend.infer(inputs)["score"][0]))
    assert scores[0] == pytest.approx(scores[1], abs=1e-4)


# Scores of the shipped model before the model-contract change (saliq at 65cec86), measured
# with both backends on these four photos; the new loaders must reproduce them.
SCORES_BEFORE_CONTRACT = {
    "onnxruntime": [0.8631652593612671, 0.8879004716873169, 0.9205352067947388, 0.8334725499153137],
    "torch": [0.8631653189659119, 0.8879004120826721, 0.9205352067947388, 0.833472490310669],
}


def test_previous_default_is_recovered_from_the_new_one_and_scores_identically(tmp_path):
    """The shipped views model keeps the previous default (v1) frozen as its whole-frame
    branch: extracted with the previous spec, it scores exactly as it did before."""
    from pathlib import Path

    from skimage import data

    from saliq.assess import default_model_path
    from saliq.spec import ModelSpec
    from saliq.train.checkpoint import extract_submodule

    spec_file = Path(__file__).resolve().parents[1] / "configs" / "previous_default_spec.json"
    spec = ModelSpec.from_json(spec_file.read_text(), source=str(spec_file))
    previous = extract_submodule(
        default_model_path("safetensors"), "whole", spec, tmp_path / "previous.safetensors"
    )
    frames = [np.ascontiguousarray(f()) for f in (data.coffee, data.astronaut, data.chelsea)]
    frames.append(np.ascontiguousarray(data.rocket()))
    with saliq.load(previous, backend="torch") as assessor:
        assert assessor.spec.preprocessing_version == 1
        scores = [r.score for r in assessor.assess(frames, color="RGB")]
    np.testing.assert_allclose(scores, SCORES_BEFORE_CONTRACT["torch"], atol=1e-6, rtol=0)
