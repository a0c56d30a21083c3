"""The local runner's argument handling (no pipeline run)."""

import pytest

from morphhr_tf.training.config import TrainingConfig
from pipelines import configs, local_runner


def _refuse(*args, **kwargs):
    raise AssertionError("ran before the options were validated")


def test_defaults_are_the_cpu_profile():
    profile = local_runner.resolve_profile(local_runner.parse_args([]))
    assert profile == configs.PROFILES["cpu"]


def test_overrides_reach_the_configs():
    args = local_runner.parse_args(
        [
            "--model", "resnet18", "--resolution", "64", "--base-resolution", "32",
            "--width", "4", "--base-steps", "0", "--train-steps", "6",
            "--image-size", "48", "--eval-fraction", "0.4", "--beam-workers", "1",
            "--patients", "20", "--synthetic-rows", "128", "--auc-lower-bound", "0",
            "--beam-worker-mode", "threads", "--profile", "gpu",
        ]
    )  # fmt: skip
    profile = local_runner.resolve_profile(args)
    gpu = configs.PROFILES["gpu"]
    assert profile.training == TrainingConfig.from_custom_config(
        {
            **gpu.training.to_custom_config(),
            "model": "resnet18",
            "resolution": 64,
            "base_resolution": 64,  # resnet18 trains at --resolution
            "width": 4,
            "base_steps": 0,
        }
    )
    ingest = profile.ingest
    assert (ingest.image_size, ingest.eval_fraction, ingest.beam_workers) == (
        64,  # at least --resolution
        0.4,
        1,
    )
    assert ingest.beam_worker_mode == "threads"
    assert configs.PROFILES["gpu"].ingest.beam_worker_mode == "processes"
    assert (profile.train_steps, profile.auc_lower_bound) == (6, 0.0)
    assert (profile.synthetic_patients, profile.synthetic_rows) == (20, 128)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--resolution", "100", "--base-resolution", "64"], "multiple"),
        (["--eval-fraction", "1.5"], "eval_fraction"),
        (["--auc-lower-bound", "2"], "auc_lower_bound"),
        (["--base-steps", "-1"], "base_steps"),
    ],
)
def test_bad_overrides_raise_before_anything_runs(
    argv, message, tmp_path, monkeypatch, capsys
):
    args = _parse_unchecked(argv)
    args.work_dir = str(tmp_path / "work")
    with pytest.raises(ValueError, match=message):
        local_runner.resolve_profile(args)
    monkeypatch.setattr(local_runner, "ensure_synthetic_data", _refuse)
    monkeypatch.setattr(local_runner.pipeline_lib, "create_pipeline", _refuse)
    with pytest.raises(ValueError, match=message):
        local_runner.run(args)
    assert not (tmp_path / "work").exists()
    # On the command line: a usage error, before anything runs.
    with pytest.raises(SystemExit) as exit_info:
        local_runner.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _parse_unchecked(argv):
    """The arguments as argparse reads them, without the config validation."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_runner, "resolve_profile", lambda args: None)
        return local_runner.parse_args(argv)


def test_chestxray14_trains_the_multilabel_task_on_its_findings():
    from morphhr_tf.data.adapters.chestxray14 import FINDINGS

    profile = local_runner.resolve_profile(
        local_runner.parse_args(["--source", "chestxray14"])
    )
    training = profile.training
    assert training.task == "multilabel"
    assert training.label_list == FINDINGS
    assert training.balance == "class_weight"  # sampling is for one label
    cpu = configs.PROFILES["cpu"].training
    assert training.resolution == cpu.resolution and training.model == cpu.model
    # The binary sources keep the profile as it is.
    for source in ("cbis_ddsm", "rsna", "vindr", "csv"):
        args = local_runner.parse_args(["--source", source])
        assert local_runner.resolve_profile(args) == configs.PROFILES["cpu"]
