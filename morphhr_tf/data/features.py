"""Feature keys of the tf.Example records, shared by ingest, training,
evaluation and serving. Change a name here and every stage follows."""

IMAGE = "image"  # 16-bit grayscale PNG at the stored resolution
HEIGHT = "height"
WIDTH = "width"
# int64: 1 = any malignant finding on the image (ChestX-ray14: any finding),
# else 0
LABEL = "label"
# int64 list, multi-label data sets only (ChestX-ray14): one 0/1 per label
# name, in the order of summary.json's ``label_names``; absent from binary
# records. ``label`` is then 1 when any of them is 1.
LABELS = "labels"
PATIENT_KEY = "patient_key"  # salted hash of the patient identifier
IMAGE_KEY = "image_key"  # salted hash of the source image identity
VIEW = "view"  # CC, MLO, ...; PA, AP for chest radiographs ('' when unknown)
LATERALITY = "laterality"  # L, R ('' when unknown)
DENSITY = "density"  # breast density category as text: 1-4 or A-D ('' unknown)
DATASET = "dataset"  # source data set name, e.g. cbis_ddsm

STRING_FEATURES = (IMAGE, PATIENT_KEY, IMAGE_KEY, VIEW, LATERALITY, DENSITY, DATASET)
INT_FEATURES = (HEIGHT, WIDTH, LABEL)

# Slicing columns the evaluator reports on.
SLICE_FEATURES = (VIEW, LATERALITY, DENSITY)

# Output key of every serving signature of a binary model ([N, 1]).
PROBABILITY = "probability"
# Output key of a multi-label model's signatures: [N, L] probabilities, one
# column per label name (in the order of ``label_names``). The signatures
# also return each column under its label name ([N, 1] each).
PROBABILITIES = "probabilities"
