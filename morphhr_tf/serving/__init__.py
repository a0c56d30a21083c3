"""Serving: the SavedModel signatures and TF Serving request builders.

- :mod:`~morphhr_tf.serving.signatures`: ``serving_default``,
  ``predict_image``, ``predict_png``.
- :func:`rest_request`: the TF Serving REST JSON body for a DICOM file.
- :func:`predict_request`: the gRPC ``PredictRequest`` for a DICOM file.
- ``python -m morphhr_tf.serving.predict``: batch prediction to CSV.
"""

from morphhr_tf.serving.rest import rest_request


def predict_request(*args, **kwargs):
    """See :func:`morphhr_tf.serving.grpc_request.predict_request`."""
    from morphhr_tf.serving.grpc_request import predict_request as build

    return build(*args, **kwargs)


__all__ = ["predict_request", "rest_request"]
