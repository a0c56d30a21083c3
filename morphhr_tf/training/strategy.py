"""Distribution strategy selection: what ``strategy="auto"`` means here.

``auto`` is a ``MirroredStrategy`` over every visible GPU, and a single-device
strategy on the CPU. ``mirrored`` on a machine without GPUs mirrors over the
logical CPU devices (``tf.config.set_logical_device_configuration``), which is
how the tests exercise synchronous data parallelism without a GPU.

``multi_worker`` is ``tf.distribute.MultiWorkerMirroredStrategy``: synchronous
data parallelism over every worker the ``TF_CONFIG`` environment variable
names (each worker mirrors over its local GPUs, or its CPU), with collective
all-reduce (NCCL between GPUs, ring over gRPC between hosts). Every worker runs
the same program; the chief (the ``chief`` task, else ``worker`` 0) is the
only one whose files persist (:func:`is_chief`, :func:`worker_dir`). Without
``TF_CONFIG`` it trains on the local devices alone. TensorFlow requires it to
be created at program start, before any other TensorFlow op runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")


def select_strategy(requested: str = "auto") -> tf.distribute.Strategy:
    """Builds the distribution strategy for a request.

    Args:
        requested: ``auto``, ``mirrored``, ``one_device`` or ``multi_worker``
            (``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster).

    Returns:
        A ``tf.distribute.Strategy``; ``num_replicas_in_sync`` says how many
        replicas train in lockstep (over every worker for ``multi_worker``).

    Raises:
        ValueError: for an unknown request, or a ``TF_CONFIG`` that is not a
            JSON object.

    Example:

    >>> select_strategy("one_device").num_replicas_in_sync
    1
    """
    if requested not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {STRATEGIES}. Received: strategy={requested!r}"
        )
    if requested == "multi_worker":
        # Nothing may touch the devices before this strategy exists: it
        # configures the collective ops of the eager context.
        tf_config = os.environ.get("TF_CONFIG", "")
        if tf_config:
            try:
                parsed = json.loads(tf_config)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"TF_CONFIG must be a JSON object. Received: {tf_config!r}"
                ) from err
            if not isinstance(parsed, dict):
                raise ValueError(
                    f"TF_CONFIG must be a JSON object. Received: {tf_config!r}"
                )
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        return _KerasMultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if requested == "auto":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    cpus = tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in cpus])


class _KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` accepts what Keras 3 sends.

    Keras 3's ``fit`` (3.15 included, keras-team/keras#20585) calls
    ``strategy.reduce`` on a nested batch ``(x, y)`` (before the first step)
    and with ``axis=0`` on the scalar loss and metric results (each step).
    ``MirroredStrategy.reduce`` copes with both; the multi-worker strategy
    raises. This subclass maps the reduction over nested structures and
    reduces rank-0 values across replicas only (``axis=None``), which is what
    those calls mean. Everything else is TensorFlow's strategy, unchanged.
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_one(v):
            local = self.experimental_local_results(v)
            one_axis = None if axis is not None and local[0].shape.rank == 0 else axis
            return super(_KerasMultiWorkerMirroredStrategy, self).reduce(
                reduce_op, v, one_axis
            )

        return tf.nest.map_structure(reduce_one, value)


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public TensorFlow name of a strategy (for logs and summaries)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many worker processes train in lockstep (1 for a single process)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(t, ())) for t in ("chief", "worker")))


def task_of(strategy: tf.distribute.Strategy) -> str:
    """``"type:index"`` of this process in the cluster (``"local"`` if none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}:{resolver.task_id}"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the checkpoints, logs and models.

    True for every single-process strategy; under ``MultiWorkerMirroredStrategy``
    only for the ``chief`` task (``worker`` 0 when the cluster has no chief).
    """
    return bool(strategy.extended.should_checkpoint)


def worker_dir(path: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes what belongs at ``path``.

    Saving under ``MultiWorkerMirroredStrategy`` may run collectives, so
    every worker saves; the chief writes to ``path`` and every other worker
    to a fresh local temporary folder that :func:`discard_worker_dir` removes
    (the pattern of TensorFlow's multi-worker Keras tutorial).

    Args:
        path: the destination the chief writes to.
        strategy: the distribution strategy.

    Returns:
        ``path`` on the chief; elsewhere a path with the same base name in a
        new temporary folder.
    """
    if is_chief(strategy):
        return path
    task = task_of(strategy).replace(":", "_")
    scratch = tempfile.mkdtemp(prefix=f"morphhr_{task}_")
    return os.path.join(scratch, os.path.basename(path.rstrip("/")) or "out")


def discard_worker_dir(path: str, strategy: tf.distribute.Strategy) -> None:
    """Removes a non-chief's temporary folder made by :func:`worker_dir`."""
    if not is_chief(strategy):
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def shard_by_data(
    dataset: tf.data.Dataset, strategy: tf.distribute.Strategy
) -> tf.data.Dataset:
    """Shards a dataset of global batches by DATA across the workers.

    Every worker runs the same (seeded, ordered) input pipeline and keeps its
    replicas' slices of each global batch, so a multi-worker step sees exactly
    the global batch a single process would, provided the pipeline's order
    is deterministic. (``AUTO`` shards by file when there are enough files:
    each worker then reads its own files, and the steps no longer match a
    single process's.) The price: every worker decodes the whole global
    batch. Single-process strategies get the dataset unchanged.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def sync_replica_variables(variables: list, strategy: tf.distribute.Strategy) -> None:
    """Sets every replica's copy of ``variables`` to their mean over replicas.

    Keras 3 creates batch normalization's moving statistics with aggregation
    ``none``: under a mirrored strategy each replica updates its own copy
    from its own slice of the batch, so after training the copies differ
    between replicas (and, under ``MultiWorkerMirroredStrategy``, between
    workers), and what gets saved is one replica's estimate. The moving
    averages are linear in the batch statistics, so their mean over replicas
    is the moving average of the replica-averaged statistics: the value
    Keras 2 reported (``ON_READ`` with ``MEAN``). After this, every worker
    holds the same values. A no-op for a single replica.

    Args:
        variables: model variables (e.g. ``model.non_trainable_variables``);
            non-float ones are left alone.
        strategy: the strategy the variables were created under.
    """
    if strategy.num_replicas_in_sync < 2:
        return
    variables = [v for v in variables if tf.as_dtype(v.dtype).is_floating]
    if not variables:
        return

    def average():
        context = tf.distribute.get_replica_context()
        local = [tf.identity(getattr(v, "value", v)) for v in variables]
        means = context.all_reduce(tf.distribute.ReduceOp.MEAN, local)
        for variable, mean in zip(variables, means):
            variable.assign(mean)

    strategy.run(tf.function(average))


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Blocks until every worker reaches this point (a tiny all-reduce).

    A no-op for single-process strategies.
    """
    if num_workers(strategy) < 2:
        return
    ones = strategy.run(lambda: tf.ones([]))
    strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)
