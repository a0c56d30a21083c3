"""Training: the TFX Trainer entry point and what it is made of.

- :mod:`~morphhr_tf.training.trainer`: ``run_fn(fn_args)`` for the TFX Trainer,
  and ``train``, which dispatches to the stage functions (warm start, stage 1,
  the morph, stage 2).
- :mod:`~morphhr_tf.training.stages`: datasets, compile and fit of one stage.
- :mod:`~morphhr_tf.training.checks`: predictions, AUC, the morph check and the
  resolution gain (DeLong) the trainer reports.
- :mod:`~morphhr_tf.training.config`: ``custom_config`` parsed and validated.
- :mod:`~morphhr_tf.training.precision` / :mod:`~morphhr_tf.training.strategy`:
  what ``auto`` means on this machine.
- :mod:`~morphhr_tf.training.input_pipeline`: ``tf.data`` over the TFRecords.
- :mod:`~morphhr_tf.training.schedule`: learning-rate schedules and the
  layer-wise learning-rate optimizer of the MorphHR stage 2.
- :mod:`~morphhr_tf.training.export`: the float32 SavedModel with the serving
  signatures.
"""
