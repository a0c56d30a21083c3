"""`added_layers`: the one way the trainer and the benchmarks find the new layers."""

import pytest

from morphhr_tf.models import build_morphhr, resnet18
from morphhr_tf.models.detail_branch import DETAIL_PREFIX
from morphhr_tf.models.morphhr import DOWNSAMPLER_NAME, MORPHHR_PREFIX, added_layers


def _not_in_base(model, base):
    """The trainer's former definition: trainable weights of non-base layers."""
    trunk = {v.path.split("/")[0] for v in base.weights}
    return {
        v.path.split("/")[0]
        for v in model.trainable_weights
        if v.path.split("/")[0] not in trunk
    }


@pytest.fixture(scope="module")
def base():
    return resnet18((16, 16, 1), width=4, include_top=True, num_classes=1)


@pytest.mark.parametrize("detail_branch", [None, "zeros", "antithetic"])
@pytest.mark.parametrize("front_batch_norm", [False, True])
def test_prefix_and_set_difference_agree(base, detail_branch, front_batch_norm):
    model = build_morphhr(
        base,
        32,
        front_channels=4,
        front_batch_norm=front_batch_norm,
        detail_branch=detail_branch,
        seed=0,
    )
    added = added_layers(model)
    assert added == _not_in_base(model, base)
    assert DOWNSAMPLER_NAME in added
    assert added_layers(model, (MORPHHR_PREFIX, DETAIL_PREFIX)) == added
    has_detail = any(name.startswith(DETAIL_PREFIX) for name in added)
    assert has_detail == (detail_branch is not None)
    # Weightless new layers (adds, pools, plain activations) are left out.
    assert all(model.get_layer(name).trainable_weights for name in added)


def test_plain_base_has_no_added_layers(base):
    assert added_layers(base) == set()
    assert added_layers(base, ()) == set()
