"""The layers import one way (docs/architecture.md, "Layers").

import-linter checks the contracts in pyproject.toml (``[tool.importlinter]``): the layer
order, no cycle between sibling modules at any depth, and the web stack only in the app.
It sees imports inside functions too, so a function-local import cannot hide a cycle; and
convscope imports nothing inside functions except heavy optional dependencies, each marked.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

#: third-party packages heavy enough to import only where they are used
HEAVY = {"matplotlib", "captum", "sklearn", "scipy", "skimage", "openTSNE", "fastapi",
         "starlette", "uvicorn", "mlxtend", "playwright", "torch.utils.tensorboard",
         "torch._export", "timm", "h5py", "onnxruntime", "cv2", "ai_edge_litert",
         "pycocotools"}
MARK = "# heavy optional dependency"


def lint_imports_command() -> list[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    found = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is missing: pip install -e '.[test]' (import-linter)"
    return [found]


def test_imports_follow_the_layers_and_make_no_cycle():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]))
    run = subprocess.run([*lint_imports_command(), "--no-cache", "--config",
                          str(ROOT / "pyproject.toml")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "0 broken" in out and "BROKEN" not in out, out


def test_every_module_is_in_a_layer():
    """A module the layers contract does not name would go unchecked."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace(":", "|").split("|")}
    outside = []
    for path in sorted((SRC / "convscope").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module in ("convscope", "convscope.render"):  # the public API; render's registry
            continue
        if not any(module == n or module.startswith(n + ".") for n in named):
            outside.append(module)
    assert not outside, f"not in any layer of pyproject.toml's contract: {outside}"


def function_local_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, module, source line) of every import inside a function in src/."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        seen = set()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in seen:
                    continue
                seen.add(node.lineno)
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    modules = ["." * node.level + (node.module or "")]
                for module in modules:
                    found.append((str(path.relative_to(ROOT)), node.lineno, module,
                                  lines[node.lineno - 1].strip()))
    return found


def is_heavy(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in HEAVY)


def test_only_marked_heavy_dependencies_are_imported_inside_functions():
    local = function_local_imports()
    internal = [f"{f}:{n}: {src}" for f, n, m, src in local
                if m.startswith((".", "convscope"))]
    assert not internal, "convscope modules imported inside functions (import them at the " \
                         "top; a cycle means a layer is wrong):\n" + "\n".join(internal)
    light = [f"{f}:{n}: {src}" for f, n, m, src in local if not is_heavy(m)]
    assert not light, "light imports inside functions (import them at the top):\n" + \
                      "\n".join(light)
    unmarked = [f"{f}:{n}: {src}" for f, n, m, src in local if MARK not in src]
    assert not unmarked, f"heavy imports inside functions need {MARK!r}:\n" + \
                         "\n".join(unmarked)


#: cross-cutting suites (fuzzing, safety, reliability, browser, distributed, ...): not one module's
SUITES = "suites"


def test_tests_mirror_the_package():
    """tests/<package>/test_<module>.py, so a newcomer finds a module's tests by its path.

    A folder under tests/ is a convscope package (or suites/), with an __init__.py; a test file
    in a package's folder names one of that package's modules (or subpackages); a test file at
    the top of tests/ names one of convscope's top-level modules.
    """
    package = SRC / "convscope"
    tests = ROOT / "tests"
    wrong = []
    for path in sorted(tests.rglob("test_*.py")):
        rel = path.relative_to(tests)
        name = rel.stem.removeprefix("test_")
        if len(rel.parts) == 1:
            where = package
        elif len(rel.parts) == 2 and rel.parts[0] == SUITES:
            continue
        elif len(rel.parts) == 2 and (package / rel.parts[0] / "__init__.py").exists():
            where = package / rel.parts[0]
            if not (tests / rel.parts[0] / "__init__.py").exists():
                wrong.append(f"tests/{rel.parts[0]}/ has no __init__.py")
        else:
            wrong.append(f"tests/{rel}: tests/ holds convscope's packages and suites/ only")
            continue
        if where != package and name == where.name:
            continue
        if not ((where / f"{name}.py").exists() or (where / name / "__init__.py").exists()):
            wrong.append(f"tests/{rel}: no module {name} in {where.relative_to(SRC)}")
    assert not wrong, "\n".join(sorted(set(wrong)))


#: modules still naming flags in their errors, being restructured elsewhere (TODO: convert)
FLAG_MESSAGES_TODO: set[str] = set()  # every library message names parameters now
#: a flag in a message, as in "--max-maps must be at least 1"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
#: a whole command to run, which may name its flags: "`convscope train --out DIR`"
COMMAND = re.compile(r"`convscope [^`]*`")


def _text(node: ast.expr) -> str:
    """The literal text of a message: an f-string's values read as {}."""
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""


def error_messages() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string in a ``raise`` or in a call of an ``...Error`` class
    (errors returned to be raised) in the library, outside cli/."""
    found = []
    for path in sorted((SRC / "convscope").rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("convscope/cli/") or rel in FLAG_MESSAGES_TODO:
            continue
        tree = ast.parse(path.read_text())
        roots = [n for n in ast.walk(tree) if isinstance(n, ast.Raise) or (
            isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", ""))
            .endswith("Error"))]
        for root in roots:
            found += [(rel, n.lineno, text) for n, text in _strings(root) if text]
    return sorted(set(found))  # a raise of an ...Error(...) call is found twice


def _strings(node: ast.AST):
    """The string literals under ``node``, each f-string whole (not its parts)."""
    if isinstance(node, (ast.JoinedStr, ast.Constant)):
        yield node, _text(node)
        return
    for child in ast.iter_child_nodes(node):
        yield from _strings(child)


def test_library_errors_name_parameters_not_flags():
    """A Python caller never typed a flag: the library's errors name parameters in backticks
    (`max_maps`), and the CLI's error handler writes each as its command's flag (--max-maps);
    docs/architecture.md, "Conventions"."""
    flags = [f"{f}:{n}: {text!r}" for f, n, text in error_messages()
             if FLAG.search(COMMAND.sub("", text))]
    assert not flags, "name the parameter in backticks, not the CLI's flag:\n" + \
                      "\n".join(flags)


def test_the_flag_check_sees_messages():
    texts = [text for f, n, text in error_messages()]
    assert any("`max_maps` must be at least 1" in t for t in texts)
    assert FLAG.search("--max-maps must be at least 1") and not FLAG.search("a-b --, 0--1")
    assert not FLAG.search(COMMAND.sub("", "run `convscope train --out DIR` first"))
