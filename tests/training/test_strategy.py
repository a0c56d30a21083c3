import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from morphhr_tf.training.strategy import select_strategy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_auto_is_one_device_on_cpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has GPUs")
    strategy = select_strategy("auto")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="tpu"):
        select_strategy("tpu")


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import morphhr_tf
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from conftest import write_split
    from morphhr_tf.training import trainer

    out = sys.argv[2]
    write_split(out + "/ex/Split-train/d.gz", 16, 64, seed=1)
    write_split(out + "/ex/Split-eval/d.gz", 9, 64, seed=2)

    class FnArgs:
        custom_config = dict(model="morphhr", base_resolution=32, resolution=64,
                             width=4, base_steps=2, epochs=1, batch_size=4,
                             strategy="mirrored", precision="auto")
        train_steps = 2
        train_files = [out + "/ex/Split-train/*"]
        eval_files = [out + "/ex/Split-eval/*"]
        serving_model_dir = out + "/model/Format-Serving"
        model_run_dir = out + "/run"
        base_model = None

    trainer.run_fn(FnArgs())
    print("RESULT " + open(out + "/run/training_summary.json").read().replace("\\n", " "))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(_MIRRORED_SCRIPT)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
    )
    result = subprocess.run(
        [sys.executable, str(script), os.path.dirname(__file__), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][-1]
    summary = json.loads(line[len("RESULT ") :])
    assert summary["strategy"] == "MirroredStrategy"
    assert summary["replicas"] == 2
    assert os.path.exists(tmp_path / "model" / "Format-Serving" / "saved_model.pb")
