"""Evaluation: the pipeline's TFMA config and ROC plots.

- :func:`morphhr_tf.evaluation.eval_config.make_eval_config`
- :mod:`morphhr_tf.evaluation.roc_plot`
"""
