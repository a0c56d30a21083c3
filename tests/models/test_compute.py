import keras

from morphhr_tf.models.compute import forward_macs


def test_forward_macs_counts_convolutions_and_dense_layers():
    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(2, 3, padding="same")(x)  # 8*8*2 outputs x 9 taps
    y = keras.layers.Conv2D(4, 1, strides=2)(y)  # 4*4*4 outputs x 2 inputs
    y = keras.layers.Flatten()(y)
    y = keras.layers.Dense(3)(y)  # 64 x 3
    assert forward_macs(keras.Model(x, y)) == 8 * 8 * 2 * 9 + 4 * 4 * 4 * 2 + 64 * 3
