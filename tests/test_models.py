"""Models: shapes, Opacus compatibility, and clear errors."""

from __future__ import annotations

import pytest
import torch

from privtrain import models
from privtrain.errors import UserError
from privtrain.models import ModelSpec


@pytest.mark.parametrize(
    "spec", [ModelSpec("logreg"), ModelSpec("mlp", hidden=(32, 16)), ModelSpec("cnn", channels=(8, 16), groups=4)]
)
def test_models_forward_and_pass_the_opacus_validator(spec):
    model = models.build(spec, n_inputs=64, n_classes=10, image_shape=(1, 8, 8))
    assert model(torch.rand(5, 64)).shape == (5, 10)
    models.validate_for_dp(model)  # raises on a BatchNorm or other unsupported layer


def test_cnn_uses_groupnorm_not_batchnorm():
    model = models.build(ModelSpec("cnn"), n_inputs=64, n_classes=10, image_shape=(1, 8, 8))
    kinds = {type(m).__name__ for m in model.modules()}
    assert "GroupNorm" in kinds and not any("BatchNorm" in k for k in kinds)


def test_validator_rejects_batchnorm():
    with pytest.raises(UserError, match="not trainable with DP-SGD"):
        models.validate_for_dp(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)))


def test_model_errors_name_the_field():
    with pytest.raises(UserError, match="model='resnet' is unknown"):
        models.build(ModelSpec("resnet"), n_inputs=4, n_classes=2, image_shape=None)
    with pytest.raises(UserError, match="model=cnn needs image data"):
        models.build(ModelSpec("cnn"), n_inputs=4, n_classes=2, image_shape=None)
    with pytest.raises(UserError, match="model.activation='swish'"):
        models.build(ModelSpec("mlp", activation="swish"), n_inputs=4, n_classes=2, image_shape=None)
