"""Evaluation: the pipeline's TFMA config, statistics and plots.

- :func:`morphhr_tf.evaluation.eval_config.make_eval_config`
- :mod:`morphhr_tf.evaluation.metrics`: AUC with CI, DeLong, operating points
- :mod:`morphhr_tf.evaluation.plots`: ROC, precision-recall and calibration
"""
