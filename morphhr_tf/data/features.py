"""Feature keys of the tf.Example records, shared by ingest, training,
evaluation and serving. Change a name here and every stage follows."""

IMAGE = "image"  # 16-bit grayscale PNG at the stored resolution
HEIGHT = "height"
WIDTH = "width"
LABEL = "label"  # int64: 1 = any malignant finding on the image, else 0
PATIENT_KEY = "patient_key"  # salted hash of the patient identifier
IMAGE_KEY = "image_key"  # salted hash of the source image identity
VIEW = "view"  # CC, MLO, ... ('' when unknown)
LATERALITY = "laterality"  # L, R ('' when unknown)
DENSITY = "density"  # breast density category as text: 1-4 or A-D ('' unknown)
DATASET = "dataset"  # source data set name, e.g. cbis_ddsm

STRING_FEATURES = (IMAGE, PATIENT_KEY, IMAGE_KEY, VIEW, LATERALITY, DENSITY, DATASET)
INT_FEATURES = (HEIGHT, WIDTH, LABEL)

# Slicing columns the evaluator reports on.
SLICE_FEATURES = (VIEW, LATERALITY, DENSITY)

# Output key of every serving signature.
PROBABILITY = "probability"
