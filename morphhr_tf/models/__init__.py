"""Backbones and the MorphHR builder."""

from morphhr_tf.models.keras_hub_import import import_keras_hub_resnet
from morphhr_tf.models.morphhr import build_morphhr
from morphhr_tf.models.resnet import resnet18, resnet34
from morphhr_tf.models.torch_import import import_torch_resnet, load_state_dict

__all__ = [
    "build_morphhr",
    "import_keras_hub_resnet",
    "import_torch_resnet",
    "load_state_dict",
    "resnet18",
    "resnet34",
]
