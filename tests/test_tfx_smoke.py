"""A two-component TFX pipeline runs under LocalDagRunner with sqlite MLMD and
its executions are read back from ML Metadata."""

import os

import morphhr_tf.runtime  # noqa: F401  (runtime policy before TensorFlow)
from morphhr_tf.runtime import beam_pipeline_args

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import (
    InputArtifact,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model


@component
def WriteNumbers(count: Parameter[int], numbers: OutputArtifact[Examples]):
    with open(os.path.join(numbers.uri, "numbers.txt"), "w") as f:
        f.write("\n".join(str(i) for i in range(count)))


@component
def SumNumbers(numbers: InputArtifact[Examples], total: OutputArtifact[Model]):
    with open(os.path.join(numbers.uri, "numbers.txt")) as f:
        value = sum(int(line) for line in f)
    with open(os.path.join(total.uri, "total.txt"), "w") as f:
        f.write(str(value))
    total.set_int_custom_property("total", value)


def test_two_component_pipeline_runs_and_is_recorded_in_mlmd(tmp_path):
    writer = WriteNumbers(count=10)
    summer = SumNumbers(numbers=writer.outputs["numbers"])
    db = str(tmp_path / "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="smoke",
        pipeline_root=str(tmp_path / "root"),
        components=[writer, summer],
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(db)
        ),
        beam_pipeline_args=beam_pipeline_args(1),
        enable_cache=False,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = db
    store = mlmd.MetadataStore(config)
    executions = store.get_executions()
    types = {t.id: t.name for t in store.get_execution_types()}
    names = sorted(types[e.type_id].rsplit(".", 1)[-1] for e in executions)
    assert names == ["SumNumbers", "WriteNumbers"]
    assert all(
        e.last_known_state == metadata_store_pb2.Execution.COMPLETE for e in executions
    )
    models = store.get_artifacts_by_type("Model")
    assert len(models) == 1
    assert models[0].custom_properties["total"].int_value == sum(range(10))
    with open(os.path.join(models[0].uri, "total.txt")) as f:
        assert f.read() == "45"
