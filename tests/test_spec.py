import json

import pytest

from saliq.errors import IncompatibleModelError, ModelFormatError
from saliq.spec import SPEC_VERSION, ModelSpec


def _spec(**kw):
    base = {
        "name": "m",
        "architecture": "sgdnet",
        "backbone": "efficientnet_lite0",
        "input_height": 224,
        "input_width": 256,
    }
    return ModelSpec(**{**base, **kw})


def test_json_round_trip():
    spec = _spec(model_config={"feature_strides": [16, 32]}, io_dtypes={"image": "float32"})
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert again.saliency_size == (14, 16)


@pytest.mark.parametrize("height", [0, 100, -32])
def test_size_must_be_multiple_of_32(height):
    with pytest.raises(ModelFormatError, match="multiple of 32"):
        _spec(input_height=height)


def test_rejects_foreign_json():
    with pytest.raises(ModelFormatError, match="not a saliq"):
        ModelSpec.from_json(json.dumps({"name": "x"}))
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        ModelSpec.from_json("{oops")


def test_rejects_other_versions():
    payload = json.loads(_spec().to_json())
    payload["spec_version"] = SPEC_VERSION + 1
    with pytest.raises(IncompatibleModelError, match="upgrade saliq"):
        ModelSpec.from_json(json.dumps(payload))
    payload = json.loads(_spec().to_json())
    payload["preprocessing_version"] = 99
    with pytest.raises(IncompatibleModelError, match="preprocessing version 99"):
        ModelSpec.from_json(json.dumps(payload))


def test_bad_inputs_outputs():
    with pytest.raises(ModelFormatError):
        _spec(inputs=("prior",))
    with pytest.raises(ModelFormatError):
        _spec(outputs=("saliency",))


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"saliency_stride": 0}, "saliency_stride"),
        ({"output_shapes": {"x": ["a"]}}, "output_shapes"),
        ({"output_shapes": {"x": 5}}, "output_shapes"),
        ({"outputs": None}, "incomplete"),
        ({"inputs": "image"}, "inputs must be a list"),
        ({"mean": [0.5, 0.5]}, "mean must be 3 numbers"),
        ({"std": [0.5, 0.0, 0.5]}, "std must be positive"),
        ({"outputs": ["score", "sharpness"]}, "no shape in output_shapes"),
    ],
)
def test_hand_edited_specs_fail_in_one_line(patch, message):
    """A spec edited by hand or copied from elsewhere: a ModelFormatError, never a traceback."""
    base = json.loads(_spec().to_json())
    with pytest.raises(ModelFormatError, match=message):
        ModelSpec.from_json(json.dumps({**base, **patch}), source="edited.onnx")


def test_tensor_shape_table():
    spec = _spec(
        input_height=64,
        input_width=96,
        inputs=("image", "gradient", "prior"),
        outputs=("score", "saliency", "sharpness"),
        output_shapes={"sharpness": [4]},
    )
    assert spec.tensor_shape("image") == (3, 64, 96)
    assert spec.tensor_shape("gradient") == (1, 64, 96)
    assert spec.tensor_shape("prior") == (1, 16, 24)
    assert spec.tensor_shape("score") == ()
    assert spec.tensor_shape("saliency") == (1, 4, 6)
    assert spec.tensor_shape("sharpness") == (4,)
    with pytest.raises(KeyError):
        spec.tensor_shape("nope")
