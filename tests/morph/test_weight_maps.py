import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphhr_tf.morph import weight_maps as wm

NEW = wm.NEW_UNIT


def test_net2net_index_map_keeps_old_units_and_draws_in_range():
    m = wm.net2net_index_map(3, 8, np.random.default_rng(0))
    np.testing.assert_array_equal(m[:3], [0, 1, 2])
    assert m.shape == (8,) and m.min() >= 0 and m.max() <= 2
    again = wm.net2net_index_map(3, 8, np.random.default_rng(0))
    np.testing.assert_array_equal(m, again)


def test_netmorph_index_map_marks_new_units():
    np.testing.assert_array_equal(wm.netmorph_index_map(2, 4), [0, 1, NEW, NEW])


@pytest.mark.parametrize("old, new", [(3, 3), (3, 2), (0, 4), (3, 4.5)])
def test_index_maps_reject_bad_widths(old, new):
    with pytest.raises(ValueError, match="Received"):
        wm.netmorph_index_map(old, new)


def test_take_units_hand_computed():
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = wm.take_units(a, np.array([2, 0, NEW, 0]), fill=9.0)
    np.testing.assert_array_equal(out, [[3, 1, 9, 1], [6, 4, 9, 4]])
    out = wm.take_units(a, np.array([1, NEW]), axis=0, fill=np.array([[7.0, 8.0, 9.0]]))
    np.testing.assert_array_equal(out, [[4, 5, 6], [7, 8, 9]])


def test_widen_outgoing_hand_computed():
    kernel = np.array([[1.0, 2.0], [3.0, 4.0]])
    bias = np.array([0.5, -0.5])
    k, b = wm.widen_outgoing(
        kernel, bias, np.array([0, 1, 1, NEW]), np.array([[7.0], [8.0]])
    )
    np.testing.assert_array_equal(k, [[1, 2, 2, 7], [3, 4, 4, 8]])
    np.testing.assert_array_equal(b, [0.5, -0.5, -0.5, 0.0])


def test_widen_incoming_hand_computed():
    kernel = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = wm.widen_incoming(kernel, np.array([0, 1, 2, 0, 2, NEW]), 3)
    expected = [[0.5, 1.0], [3.0, 4.0], [2.5, 3.0], [0.5, 1.0], [2.5, 3.0], [0.0, 0.0]]
    np.testing.assert_allclose(out, expected)


def test_widen_incoming_conv_axis():
    kernel = np.arange(2 * 2 * 2 * 1, dtype=np.float32).reshape(2, 2, 2, 1)
    out = wm.widen_incoming(kernel, np.array([0, 1, 1]), 2, axis=-2)
    np.testing.assert_allclose(out[:, :, 0], kernel[:, :, 0])
    np.testing.assert_allclose(out[:, :, 1], kernel[:, :, 1] / 2)
    np.testing.assert_allclose(out[:, :, 2], kernel[:, :, 1] / 2)


def test_widen_incoming_rejects_dropped_units():
    with pytest.raises(ValueError, match="drops"):
        wm.widen_incoming(np.ones((3, 1)), np.array([0, 0, 2]), 3)


@settings(max_examples=30, deadline=None)
@given(
    old=st.integers(1, 6),
    extra=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_net2net_student_layer_pair_equals_teacher(old, extra, seed):
    """Property: h' = x W'_1, y' = h' W'_2 gives the teacher's y for any map."""
    rng = np.random.default_rng(seed)
    w1, w2 = rng.normal(size=(4, old)), rng.normal(size=(old, 3))
    x = rng.normal(size=(5, 4))
    m = wm.net2net_index_map(old, old + extra, rng)
    w1s, _ = wm.widen_outgoing(w1, None, m)
    w2s = wm.widen_incoming(w2, m, old)
    np.testing.assert_allclose(x @ w1s @ w2s, x @ w1 @ w2, atol=1e-10)


def test_concat_index_maps_hand_computed():
    out = wm.concat_index_maps([np.array([1, 0, NEW]), None], [2, 3])
    np.testing.assert_array_equal(out, [1, 0, NEW, 2, 3, 4])


def test_flatten_index_map_hand_computed():
    # (H, W) = (1, 2), teacher C = 2, student map [0, 1, 0].
    out = wm.flatten_index_map(np.array([0, 1, 0]), (1, 2), 2)
    np.testing.assert_array_equal(out, [0, 1, 0, 2, 3, 2])
    x = np.arange(4.0).reshape(1, 2, 2)  # teacher tensor, flattened = [0,1,2,3]
    student = x[..., [0, 1, 0]].reshape(-1)
    np.testing.assert_array_equal(student, x.reshape(-1)[out])


def test_identity_conv_kernel_is_a_centred_delta():
    k = wm.identity_conv_kernel((3, 5), 2)
    assert k.shape == (3, 5, 2, 2)
    np.testing.assert_array_equal(k[1, 2], np.eye(2))
    assert k.sum() == 2.0
    with pytest.raises(ValueError, match="odd"):
        wm.identity_conv_kernel((2, 3), 1)


def test_identity_batch_norm_normalizes_to_one():
    gamma, beta, mean, var = wm.identity_batch_norm(3, 1e-3)
    np.testing.assert_array_equal(gamma, 1.0)
    np.testing.assert_array_equal(beta + mean, 0.0)
    np.testing.assert_allclose(np.sqrt(var + np.float32(1e-3)), 1.0, rtol=1e-7)


def test_pad_kernel_hand_computed():
    k = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    out = wm.pad_kernel(k, (3, 3))
    assert out.shape == (3, 3, 2, 2)
    np.testing.assert_array_equal(out[1, 1], k[0, 0])
    assert np.abs(out).sum() == np.abs(k).sum()
    with pytest.raises(ValueError, match="even"):
        wm.pad_kernel(k, (2, 2))


def test_collapse_kernel_sums_input_channels():
    k = np.arange(12.0).reshape(1, 2, 3, 2)
    out = wm.collapse_kernel(k)
    assert out.shape == (1, 2, 1, 2)
    np.testing.assert_array_equal(out[0, 1, 0], [6 + 8 + 10, 7 + 9 + 11])


def test_average_pool_kernel_hand_computed():
    k = wm.average_pool_kernel(2, 3, 2)
    assert k.shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(k[0, 1], [[0.25, 0.0], [0.0, 0.25], [0.0, 0.0]])
    with pytest.raises(ValueError, match="out_channels"):
        wm.average_pool_kernel(2, 1, 2)
