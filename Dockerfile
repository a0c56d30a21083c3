# The image every Kubeflow Pipelines / Vertex AI step of the MorphHR pipeline
# runs in: the TFX base image of the locked TFX release (TFX, TF, TFMA, Beam and
# the Kubeflow v2 entrypoints), plus this repository's lock and package.
#
#   docker build -t REGISTRY/morphhr:0.1.0 .
#   docker push REGISTRY/morphhr:0.1.0
#   python pipelines/kubeflow_v2_runner.py --image REGISTRY/morphhr:0.1.0 ...
#
# The tag must match tfx== in requirements.txt (tests/test_dockerfile.py checks
# it). The same image is published as gcr.io/tfx-oss-public/tfx:1.21.0
# (--build-arg TFX_IMAGE=...). For GPUs, build FROM a CUDA-enabled TensorFlow
# image with the same Python and keep the rest.
ARG TFX_IMAGE=tensorflow/tfx:1.21.0
# Beam's SDK harness launcher of the locked Beam release (apache-beam== in
# requirements.txt): with it this image is also the SDK container of Beam's
# portable runners (Dataflow --sdk_container_image, Flink and Spark
# --environment_config), so their workers decode DICOM with this package.
ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:2.77.0
FROM ${BEAM_SDK_IMAGE} AS beam_sdk

FROM ${TFX_IMAGE}
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam

WORKDIR /pipeline

# The lock first, so code edits do not reinstall dependencies. --no-deps: the
# lock is complete and deliberately overrides two of TFX's pins (BUILD.md).
# The image runs the product only: the lock's test and lint tools (pytest and
# iniconfig, which only pytest needs; hypothesis, atheris, ruff; jax and
# jaxlib, for the JAX test job) stay out.
COPY requirements.txt ./
RUN grep -vE '^(atheris|hypothesis|iniconfig|jax|jaxlib|pytest|ruff)==' requirements.txt \
        > requirements-runtime.txt \
    && python -m pip install --no-cache-dir --no-deps -r requirements-runtime.txt \
    && rm requirements-runtime.txt

# The package (morphhr_tf) plus the TFX glue the executors are imported from
# (components.*) and the pipeline definition. pyproject.toml names README.md
# as the readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY morphhr_tf/ morphhr_tf/
COPY components/ components/
COPY pipelines/ pipelines/
RUN python -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && python -c "import morphhr_tf, components.dicom_example_gen, tfx.v1"

# Executors are loaded by class path, e.g.
# components.dicom_example_gen.executor.Executor: keep /pipeline importable.
ENV PYTHONPATH=/pipeline \
    KERAS_BACKEND=tensorflow

# Beam workers start the image bare; Kubeflow and Vertex AI name their own
# command (python -m tfx.orchestration.kubeflow.v2.container...).
ENTRYPOINT ["/opt/apache/beam/boot"]
