"""DICOM reading, preprocessing, data set adapters, splits.

Light imports only: TensorFlow (the codec) and Apache Beam (the ingest) load
when :mod:`morphhr_tf.data.tfrecord_codec` / :mod:`morphhr_tf.data.ingest`
are imported.
"""

from morphhr_tf.data.adapters import SourceListing, load_source
from morphhr_tf.data.deid import image_key, patient_key, resolve_salt
from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram
from morphhr_tf.data.preprocessing import (
    BreastMask,
    CanonicalOrientation,
    CropToBreast,
    MammogramPreprocessor,
    Resize,
    ToUint16,
)
from morphhr_tf.data.records import ImageRecord
from morphhr_tf.data.splits import assign_split, assign_splits

__all__ = [
    "BreastMask",
    "CanonicalOrientation",
    "CropToBreast",
    "DicomRejected",
    "ImageRecord",
    "MammogramPreprocessor",
    "Resize",
    "SourceListing",
    "ToUint16",
    "assign_split",
    "assign_splits",
    "image_key",
    "load_source",
    "patient_key",
    "read_mammogram",
    "resolve_salt",
]
