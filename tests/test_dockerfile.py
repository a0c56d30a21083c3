"""Static checks of the pipeline image's Dockerfile (no Docker engine needed).

The image must build on the TFX image of the locked TFX release and install
the lock less its test tools, then this package, without dependency
resolution.
"""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with continuations joined, comments gone."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continuation
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        op, _, args = current.partition(" ")
        instructions.append((op.upper(), args.strip()))
        current = ""
    assert not current, f"dangling continuation: {current!r}"
    return instructions


@pytest.fixture(scope="module")
def dockerfile():
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        return parse_dockerfile(f.read())


def _lock() -> dict[str, str]:
    pins = {}
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
        for line in f:
            match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def _stages(instructions) -> list[tuple[str, str]]:
    """``[(image, stage name)]`` of every FROM, ARG defaults substituted."""
    args, stages = {}, []
    for op, rest in instructions:
        if op == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        if op == "FROM":
            parts = rest.split()
            image = re.sub(
                r"\$\{(\w+)\}|\$(\w+)",
                lambda m: args[m.group(1) or m.group(2)],
                parts[0],
            )
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            stages.append((image, name))
    assert stages, "no FROM"
    return stages


def test_parser_joins_continuations_and_drops_comments():
    parsed = parse_dockerfile("# c\nFROM a:1\nRUN x \\\n  # inner\n  && y\n")
    assert parsed == [("FROM", "a:1"), ("RUN", "x && y")]


def test_builds_on_the_tfx_image_of_the_locked_release(dockerfile):
    import tfx

    image = _stages(dockerfile)[-1][0]  # the final stage is the image
    repository, _, tag = image.rpartition(":")
    # TFX publishes the same image on Docker Hub and on GCR.
    assert repository in ("tensorflow/tfx", "gcr.io/tfx-oss-public/tfx"), image
    assert tag == _lock()["tfx"] == tfx.__version__ == "1.21.0"


def test_carries_the_beam_harness_of_the_locked_beam(dockerfile):
    import apache_beam

    stages = dict((name, image) for image, name in _stages(dockerfile) if name)
    copies = [
        shlex.split(rest)
        for op, rest in dockerfile
        if op == "COPY" and rest.startswith("--from=")
    ]
    beam = [c for c in copies if c[1:] == ["/opt/apache/beam", "/opt/apache/beam"]]
    assert beam, "no COPY --from=<Beam SDK image> /opt/apache/beam"
    image = stages[beam[0][0].split("=", 1)[1]]
    repository, _, tag = image.rpartition(":")
    assert re.fullmatch(r"apache/beam_python3\.\d+_sdk", repository), image
    assert tag == _lock()["apache-beam"] == apache_beam.__version__
    entrypoint = [rest for op, rest in dockerfile if op == "ENTRYPOINT"][-1]
    assert json.loads(entrypoint) == ["/opt/apache/beam/boot"]


def _index(dockerfile, predicate, what) -> int:
    for i, (op, rest) in enumerate(dockerfile):
        if predicate(op, rest):
            return i
    raise AssertionError(f"no {what} in the Dockerfile")


def _copied(dockerfile, upto: int) -> set[str]:
    sources = set()
    for op, rest in dockerfile[:upto]:
        if op == "COPY" and not rest.startswith("--from="):  # build context only
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            sources.update(p.rstrip("/") for p in parts[:-1])
    return sources


def test_installs_the_lock_without_resolution_then_the_package(dockerfile):
    def pip(op, rest):
        return op == "RUN" and "pip install" in rest

    lock = _index(
        dockerfile,
        lambda op, rest: pip(op, rest) and "-r requirements" in rest,
        "pip install -r requirements*.txt",
    )
    assert "--no-deps" in dockerfile[lock][1]
    assert "requirements.txt" in _copied(dockerfile, lock)
    package = _index(
        dockerfile,
        lambda op, rest: pip(op, rest) and re.search(r"\s\.(\s|$)", rest),
        "pip install .",
    )
    assert "--no-deps" in dockerfile[package][1]
    # Dependencies first: a code edit must not invalidate the lock's layer.
    assert lock < package
    assert not {"morphhr_tf", "components", "pipelines"} & _copied(dockerfile, lock)
    # What the build of "." reads is in the image by then.
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        readme = re.search(r'^readme\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
    needed = {"pyproject.toml", "morphhr_tf"} | ({readme.group(1)} if readme else set())
    missing = needed - _copied(dockerfile, package)
    assert not missing, f"not copied before 'pip install .': {sorted(missing)}"


def test_copies_what_the_executors_import_and_keeps_it_importable(dockerfile):
    copied = _copied(dockerfile, len(dockerfile))
    for source in copied:
        assert os.path.exists(os.path.join(ROOT, source)), source
    # Executors are loaded by class path: components.*, and the pipeline module.
    assert {"morphhr_tf", "components", "pipelines"} <= copied
    workdir = [rest for op, rest in dockerfile if op == "WORKDIR"][-1]
    env = " ".join(rest for op, rest in dockerfile if op == "ENV")
    assert re.search(rf"PYTHONPATH={re.escape(workdir)}(\s|:|$)", env), env
    assert "KERAS_BACKEND=tensorflow" in env


def _lock_install(dockerfile) -> list[str]:
    """The words of the RUN that installs the lock."""
    for op, rest in dockerfile:
        if op == "RUN" and "pip install" in rest and "-r requirements" in rest:
            return shlex.split(rest)
    raise AssertionError("no pip install -r requirements*.txt in the Dockerfile")


def _runtime_share(words: list[str]) -> tuple[set[str], str]:
    """``(names the lock install leaves out, the file it installs)``.

    The install is ``grep -vE PATTERN requirements.txt > FILE && pip install
    ... -r FILE``: the lock less the lines PATTERN matches.
    """
    grep = words.index("grep")
    assert words[grep + 1] == "-vE", words
    pattern, lock_file = words[grep + 2], words[grep + 3]
    assert lock_file == "requirements.txt", words
    assert words[grep + 4] == ">", words
    filtered = words[grep + 5]
    assert words[words.index("-r") + 1] == filtered, words
    with open(os.path.join(ROOT, lock_file), encoding="utf-8") as f:
        left_out = {
            re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower()
            for line in f
            if re.search(pattern, line)
        }
    return left_out, filtered


def test_the_image_leaves_the_test_tools_out(dockerfile):
    left_out, _ = _runtime_share(_lock_install(dockerfile))
    assert {"pytest", "hypothesis", "ruff", "atheris", "jax", "jaxlib"} <= left_out, (
        left_out
    )
    # Only pins are left out, never the lock's comments or anything else.
    assert left_out <= set(_lock()), left_out


def test_what_the_image_leaves_out_nothing_in_it_needs():
    """Each package left out is needed by no package the image installs, and
    imported by none of the code the image carries."""
    import ast
    import importlib.metadata as metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        left_out, _ = _runtime_share(_lock_install(parse_dockerfile(f.read())))
    left_out = {canonicalize_name(n) for n in left_out}
    kept = {canonicalize_name(n) for n in _lock()} - left_out
    needed_by = {}
    for name in kept:
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency in left_out:
                needed_by.setdefault(dependency, []).append(name)
    assert not needed_by, needed_by

    modules = {
        top
        for name in left_out
        for top in (metadata.distribution(name).read_text("top_level.txt") or name)
        .replace("-", "_")
        .split()
    }
    imported = {}
    for package in ("morphhr_tf", "components", "pipelines"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for file in files:
                if not file.endswith(".py"):
                    continue
                path = os.path.join(folder, file)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), path)
                for node in ast.walk(tree):
                    names = []
                    if isinstance(node, ast.Import):
                        names = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module:
                        names = [node.module]
                    for name in names:
                        if name.split(".")[0] in modules:
                            imported.setdefault(name, []).append(path)
    assert not imported, imported
