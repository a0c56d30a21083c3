# The image every Kubeflow Pipelines / Vertex AI step of the MorphHR pipeline
# runs in: the TFX base image (TFX, TF, TFMA, Beam and the Kubeflow v2
# entrypoints) plus this repository's locked dependencies and package.
#
#   docker build -t REGISTRY/morphhr:0.1.0 .
#   docker push REGISTRY/morphhr:0.1.0
#   python pipelines/kubeflow_v2_runner.py --image REGISTRY/morphhr:0.1.0 ...
#
# For GPUs, build FROM a CUDA-enabled TensorFlow image with the same Python
# (3.11) and keep the rest.
ARG TFX_IMAGE=gcr.io/tfx-oss-public/tfx:1.21.0
FROM ${TFX_IMAGE}

WORKDIR /pipeline

# The lock first, so code edits do not reinstall dependencies.
COPY requirements.txt pyproject.toml ./
RUN python -m pip install --no-cache-dir --no-deps -r requirements.txt

# The package (morphhr_tf) plus the TFX glue the executors are imported from
# (components.*) and the pipeline definition.
COPY morphhr_tf/ morphhr_tf/
COPY components/ components/
COPY pipelines/ pipelines/
RUN python -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && python -c "import morphhr_tf, components.dicom_example_gen, tfx.v1"

# Executors are loaded by class path, e.g.
# components.dicom_example_gen.executor.Executor: keep /pipeline importable.
ENV PYTHONPATH=/pipeline \
    KERAS_BACKEND=tensorflow
