"""docs/deploy.md can be pasted: every file a command reads is written by a
command before it, and every call into the package in its Python snippets
(``python -c`` one-liners included) matches the function's signature."""

import ast
import importlib
import inspect
import os
import re
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "deploy.md")

# What a command writes, and what one reads, as (regex, group) in the text.
PRODUCES = (
    r"--output\s+(\S+\.(?:json|yaml|yml))",
    r">\s*(\S+\.json)\b",
    r"""open\(\s*["']([^"']+)["']\s*,\s*["']w["']\s*\)""",
)
CONSUMES = (
    r"--data-binary\s+@(\S+)",
    r"""create_run_from_pipeline_package\(\s*["']([^"']+)["']""",
    r"""template_path\s*=\s*["']([^"']+)["']""",
)


def _text() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def _python_snippets(text: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    blocks += [
        m.replace("'\\''", "'") for m in re.findall(r"python -c '([^']*)'", text)
    ]
    return blocks


def test_every_file_a_command_reads_is_written_before_it():
    text = _text()
    produced = sorted(
        (m.start(), m.group(1)) for p in PRODUCES for m in re.finditer(p, text)
    )
    consumed = [(m.start(), m.group(1)) for p in CONSUMES for m in re.finditer(p, text)]
    assert {"body.json", "morphhr_pipeline.yaml"} <= {name for _, name in consumed}
    for at, name in consumed:
        before = {n for pos, n in produced if pos < at}
        assert name in before, f"docs/deploy.md reads {name!r} before writing it"


def _resolve(target):
    """A lazy re-export (``def f(*args, **kwargs)`` whose docstring says
    "See :func:`module.f`") -> the function it calls."""
    doc = inspect.getdoc(target) or ""
    match = re.match(r"See :func:`([\w.]+)`", doc)
    if not match:
        return target
    module, name = match.group(1).rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _package_names(tree: ast.Module) -> dict[str, object]:
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "morphhr_tf"
        ):
            module = importlib.import_module(node.module)
            for alias in node.names:
                target = _resolve(getattr(module, alias.name))
                names[alias.asname or alias.name] = target
    return names


def test_every_package_call_in_the_snippets_matches_its_signature():
    checked = 0
    for snippet in _python_snippets(_text()):
        try:
            tree = ast.parse(textwrap.dedent(snippet))
        except SyntaxError:  # a fragment (e.g. one argument of a call)
            continue
        names = _package_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            target = names.get(node.func.id)
            if target is None:
                continue
            kwargs = {k.arg: None for k in node.keywords if k.arg}
            try:
                inspect.signature(target).bind(*node.args, **kwargs)
            except TypeError as err:
                raise AssertionError(
                    f"docs/deploy.md calls {node.func.id}(...) with arguments its "
                    f"signature refuses: {err}\n{ast.unparse(node)}"
                ) from err
            checked += 1
    assert checked >= 3  # rest_request twice, predict_request
