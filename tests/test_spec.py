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
