"""The README as a user reads it: its commands are what CI runs, its Python snippets run as
written, and a test skips for a missing extra the same way everywhere (so CI can rerun it)."""

import ast
import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "scripts" / "readme_commands.py")
readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme)

SNIPPETS = readme.python_snippets()


def test_quick_start_and_test_commands_are_read_from_the_readme():
    quick = readme.command("quick-start")
    assert quick.startswith("python3 -m venv .venv && ") and '.venv/bin/pip install -e ".[test]"' in quick
    assert ".venv/bin/stablesam segment src/stablesam/examples/coffee.jpg" in quick
    assert readme.command("test") == ".venv/bin/python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    for name in ("quick-start", "test"):  # CI runs the README's own lines, not copies of them
        assert f"scripts/readme_commands.py {name}" in ci
    assert readme.main(["quick-start"]) == 0


def test_block_parsing_and_errors(capsys):
    text = "\n".join([
        "intro", "<!-- readme: quick-start -->", "```bash", "# a comment", "echo hi", "```", "",
        "<!-- readme: not-run -->", "", "```python", "x = 1", "```",
        "```python", "y = 2", "```", "<!-- readme: two -->", "```bash", "a", "b", "```",
    ])
    found = readme.blocks(text)
    assert [(b.lang, b.name, b.line) for b in found] == [
        ("bash", "quick-start", 3), ("python", "not-run", 10), ("python", None, 13), ("bash", "two", 17)]
    assert readme.command("quick-start", text) == "echo hi"
    assert [b.code for b in readme.python_snippets(text)] == ["y = 2\n"]
    with pytest.raises(ValueError, match="one command line"):
        readme.command("two", text)
    with pytest.raises(ValueError, match="0 blocks marked"):
        readme.command("test", text)
    with pytest.raises(ValueError, match="never closed"):
        readme.blocks("```bash\necho\n")
    assert readme.main(["no-such-block"]) == 2
    assert "no-such-block" in capsys.readouterr().err


def test_readme_has_runnable_snippets_and_marks_the_others():
    assert len(SNIPPETS) >= 2
    for block in readme.blocks(readme.README.read_text()):
        if block.lang == "python":
            ast.parse(block.code)  # every block is Python, run or not
    not_run = [b for b in readme.blocks(readme.README.read_text()) if b.name == "not-run"]
    assert not_run and all("get_backend" in b.code for b in not_run)  # only the families' block


@pytest.mark.slow
@pytest.mark.parametrize("block", SNIPPETS, ids=[f"line{b.line}" for b in SNIPPETS])
def test_python_snippet_runs_as_written(block, monkeypatch):
    """Each snippet in a fresh namespace, from the repository root (where its paths point)."""
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "__readme__"}
    exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
    if "masks" in namespace:  # both snippets end with masks of the coffee photo
        masks = namespace["masks"]
        assert len(masks) > 0
        if isinstance(masks, np.ndarray):
            assert masks.shape[-2:] == (400, 600) and masks.any()


EXTRA_MODULES = {"segment_anything_hq": "hq", "timm": "hq", "transformers": "hf", "sam2": "sam2"}


def test_extra_skips_name_their_extra():
    """A test that needs an optional package skips with "needs the [EXTRA] extra" in its reason,
    the words `.ci/run` looks for to rerun it once the extras are installed."""
    from conftest import MISSING_EXTRA

    calls = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip" and \
                    node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in EXTRA_MODULES:
                reason = next((k.value.value for k in node.keywords if k.arg == "reason"), "")
                calls.append((path.name, node.args[0].value, reason))
    assert calls
    for name, module, reason in calls:
        assert f"[{EXTRA_MODULES[module]}] extra" in reason and MISSING_EXTRA.search(reason), (name, module, reason)


def test_skip_log_records_reason(tmp_path):
    """What `.ci/run` reads: one JSON line per skip, "extra" true only for a missing extra."""
    import json
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_extra():\n    pytest.importorskip('no_such_module_xyz', reason='needs the [hq] extra')\n"
        "@pytest.mark.skip(reason='shared data not found')\ndef test_data():\n    pass\n"
        "def test_ok():\n    pass\n")
    log = tmp_path / "skips.jsonl"
    env = {**os.environ, "STABLESAM_SKIP_LOG": str(log), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((re.sub(r".*::", "", e["nodeid"]), e["extra"]) for e in entries) == [
        ("test_data", False), ("test_extra", True)]
