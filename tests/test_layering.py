"""The package reads in layers: backend -> autograd -> functions -> nn -> training -> attention -> seq2seq.
No module may import (at module level) one from a higher layer, and nothing imports TF/PyTorch."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "tinyattn"

RANK = {
    "backend": 0, "parallel": 0, "memory": 0,
    "autograd": 1,
    "functions": 2,
    "kernels": 2,
    "gradcheck": 2, "check": 2,
    "nn": 3,
    "losses": 4, "optim": 4, "train": 4, "serialization": 4,
    "attention": 5,
    "viz": 5,
    "transformer": 6,
    "seq2seq": 6,
}


def _layer(parts):
    """Layer of a module given its dotted path inside tinyattn (e.g. ['nn', 'layers'])."""
    return RANK.get(parts[0]) if parts else None


def _imports(path):
    """(dotted target inside tinyattn, line) for every module-level relative import in ``path``."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    pkg = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
    tree = ast.parse(path.read_text())
    out = []
    for node in tree.body:                       # module level only: lazy imports inside functions
        if isinstance(node, ast.ImportFrom) and node.level:   # are how lower layers reach higher ones
            base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
            mod = base + (node.module.split(".") if node.module else [])
            if node.module is None:
                for alias in node.names:
                    out.append((mod + [alias.name], node.lineno))
            else:
                out.append((mod, node.lineno))
    return out


FILES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_imports(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    own = _layer(parts)
    assert own is not None, f"{path.name}: add its layer to RANK in this test"
    for target, line in _imports(path):
        t = _layer(target)
        assert t is None or t <= own, f"{path.relative_to(ROOT)}:{line} imports {'.'.join(target)} (layer {t} > {own})"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_never_imports_reference_frameworks(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for n in names:
            assert n.split(".")[0] not in {"tensorflow", "torch", "keras", "jax"}, f"{path}: imports {n}"
