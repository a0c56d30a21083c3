"""`pip install .` into an environment that already has the lock.

BUILD.md's promise: the lock is installed first (`pip install --no-deps -r
requirements.txt`), then the project with `pip install --no-deps
--no-build-isolation .`, which installs the console scripts of
pyproject.toml's ``[project.scripts]``. The test rebuilds that situation
without network and without touching the project's own venv: a fresh venv
(from the same base interpreter) sees the lock's site-packages through a
``.pth`` line, the project is built and installed into it from a copy of the
sources, and every console script must answer ``--help``.

The lock's site-packages is added as a plain path, so its editable install of
this repository (a ``.pth`` import hook there) is not active: the scripts
import the installed copy, which the test checks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600


def _scripts() -> dict[str, str]:
    """pyproject.toml's ``[project.scripts]`` (tomllib is 3.11+; 3.10 is supported)."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        section = re.search(r"^\[project\.scripts\]\n(.*?)^\[", f.read(), re.M | re.S)
    assert section, "no [project.scripts] in pyproject.toml"
    return dict(re.findall(r'^([\w.-]+)\s*=\s*"([^"]+)"', section.group(1), re.M))


def _copy_sources(dest) -> None:
    """What the build of "." reads (the same list the Dockerfile copies)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(os.path.join(ROOT, name), dest / name)
    for name in ("morphhr_tf", "components", "pipelines"):
        shutil.copytree(os.path.join(ROOT, name), dest / name, ignore=ignore)


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with the lock (by a .pth line) and this package installed into it."""
    root = tmp_path_factory.mktemp("packaging")
    source, venv = root / "src", root / "venv"
    source.mkdir()
    _copy_sources(source)
    base_python = getattr(sys, "_base_executable", sys.executable)
    made = _run([base_python, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    lock_site = sysconfig.get_paths()["purelib"]  # this (the locked) environment's
    with open(os.path.join(purelib, "morphhr-lock.pth"), "w") as f:
        f.write(lock_site + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = _run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-deps"]
        + ["--no-build-isolation", "."],
        cwd=source,
        env=env,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv, env


@pytest.mark.slow
def test_the_installed_package_is_the_one_imported(installed):
    venv, env = installed
    code = "import morphhr_tf, components, pipelines as p; print(morphhr_tf.__file__)"
    out = _run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=venv)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(venv)), out.stdout


@pytest.mark.slow
def test_every_console_script_answers_help(installed):
    venv, env = installed
    scripts = _scripts()
    assert "morphhr-predict" in scripts
    # Together: each imports TensorFlow (or TFX) first, which takes a while.
    procs = {
        name: subprocess.Popen(
            [str(venv / "bin" / name), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=venv,
        )
        for name in scripts
    }
    failures = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        if proc.returncode != 0 or "usage:" not in stdout:
            failures[name] = (proc.returncode, stdout[-2000:], stderr[-2000:])
    assert not failures, failures
