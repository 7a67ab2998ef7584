"""Structure lint of clv_platform: imports run downward, and only the settings read the environment.

1. A module imports only from its own layer or the ones below.

The layer order is declared once, here (lowest first). A module belongs to the layer whose prefix
matches it longest; a module in no layer is an error too, so a new package must be placed. Imports
inside functions count like top-level ones: a lazy import still ties the layers together.

2. Only `ENV_READERS` touch `os.environ` / `os.getenv` (read or write): everything else gets its
settings from `clv_platform.settings` (the typed object, or `env_value` / `secret_values`).

Usage: `python tools/check_imports.py [package dir]` (default: the clv_platform folder beside this
script's parent). Prints one line per upward import and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

# Lowest first. `core` holds what every layer shares: settings, the SQL runner and transaction
# helper, thresholds, the data contract and report helpers. `wiring` (Dagster jobs, schedules and
# sensors, the code location, the command line) may import everything.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("clv_platform.settings", "clv_platform.core", "clv_platform.contract", "clv_platform.reports",
              "clv_platform.__init__")),
    ("resources", ("clv_platform.resources",)),
    ("ingestion", ("clv_platform.ingestion",)),
    ("transforms", ("clv_platform.transforms",)),
    ("models", ("clv_platform.models",)),
    ("forecast", ("clv_platform.forecast",)),
    # Checks sit above every layer they check (staging, features, models, scores) and below
    # monitoring, which reads nothing of theirs.
    ("checks", ("clv_platform.checks",)),
    ("monitoring", ("clv_platform.monitoring",)),
    ("marts", ("clv_platform.marts",)),
    ("activation", ("clv_platform.activation",)),
    ("wiring", ("clv_platform.automation", "clv_platform.definitions", "clv_platform.cli",
                "clv_platform.backtest_cli")),
)
PACKAGE = "clv_platform"

# The modules that may read the environment: the settings loader and the code location calling it.
ENV_READERS = ("clv_platform.settings", "clv_platform.definitions")
_ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def layer_of(module: str) -> int | None:
    """Index of the layer `module` belongs to (longest matching prefix), None when it is in none."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every clv_platform module imported anywhere in `tree`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # `from clv_platform import contract` imports the module clv_platform.contract
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if sub in known else target))
    return out


def environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every `os.environ`/`os.getenv`-style use, and `from os import environ`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _ENV_NAMES and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            out.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            out += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in _ENV_NAMES]
    return out


@functools.lru_cache(maxsize=None)
def _parse(text: str) -> ast.AST:
    """One parse per distinct source text: the structure tests lint many copies of one tree."""
    return ast.parse(text)


def violations(root: Path) -> list[str]:
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    names = {}
    for path in files:
        name = module_name(path, root)
        names[path] = name[: -len(".__init__")] if name.endswith(".__init__") else name
    known = set(names.values())
    problems = []
    for path, name in names.items():
        own = layer_of(name if path.name != "__init__.py" or name != PACKAGE else f"{PACKAGE}.__init__")
        if own is None:
            problems.append(f"{path}: module {name} is in no layer of tools/check_imports.py LAYERS")
            continue
        text = path.read_text(encoding="utf-8")
        try:
            tree = _parse(text)
        except SyntaxError:
            tree = ast.parse(text, filename=str(path))  # raises again, naming the file
        if name not in ENV_READERS:
            for line, what in sorted(set(environment_reads(tree))):
                problems.append(f"{path}:{line}: {name} reads the environment ({what}); only "
                                f"{', '.join(ENV_READERS)} may (use clv_platform.settings)")
        for line, target in sorted(set(imported_modules(tree, name, path.name == "__init__.py", known))):
            if target == PACKAGE:
                continue  # the package itself: only its warning filter
            theirs = layer_of(target)
            if theirs is None:
                problems.append(f"{path}:{line}: imports {target}, which is in no layer")
            elif theirs > own:
                problems.append(
                    f"{path}:{line}: {name} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]}), a higher layer"
                )
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / PACKAGE
    problems = violations(root)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"import direction and environment reads ok: {root}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
