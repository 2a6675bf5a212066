"""docs/attention.md (the attention atlas) lists every public attention name, and every path it names
exists: files and folders, tests (``tests/…py::test_name`` must be a test function defined in that
file), examples. A typo in any of them fails."""
import ast
import os
import re

import pytest

import tinyattn.attention
import tinyattn.seq2seq
import tinyattn.transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATLAS = os.path.join(ROOT, "docs", "attention.md")

# a repository path inside backticks: tinyattn/…, tests/…, examples/…, docs/…, benchmarks/…
PATH = re.compile(r"`((?:tinyattn|tests|examples|docs|benchmarks)/[^`\s]*)")


def atlas_text():
    with open(ATLAS, encoding="utf-8") as f:
        return f.read()


def public_names():
    return sorted(set(tinyattn.attention.__all__) | set(tinyattn.transformer.__all__)
                  | set(tinyattn.seq2seq.__all__))


def named_paths(text):
    return sorted(set(m.group(1) for m in PATH.finditer(text)))


def test_function_names(path):
    """The test functions defined at any level of a test file (module functions, class methods)."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


test_function_names.__test__ = False          # a helper, not a test


def missing_paths(text):
    """Every path the atlas names that does not exist, as 'path (why)'."""
    bad = []
    for ref in named_paths(text):
        path, _, test = ref.partition("::")
        if not os.path.exists(os.path.join(ROOT, path)):
            bad.append(f"{ref} (no such file)")
        elif test:
            if not path.endswith(".py"):
                bad.append(f"{ref} (a test id needs a .py file)")
            elif test not in test_function_names(path):
                bad.append(f"{ref} (no function {test} in {path})")
    return bad


def test_every_public_attention_name_is_in_the_atlas():
    text = atlas_text()
    missing = [n for n in public_names() if f"`{n}`" not in text]
    assert not missing, (f"docs/attention.md does not list {missing}: add each to its mechanism's "
                         f"section (Names:), in backticks")


def test_every_path_the_atlas_names_exists():
    text = atlas_text()
    assert len(named_paths(text)) > 50              # the atlas does name its files, tests and examples
    bad = missing_paths(text)
    assert not bad, "docs/attention.md names paths that do not exist:\n" + "\n".join(bad)


def test_every_example_the_atlas_names_is_checked():
    # the atlas names the new variant examples, and each one exists and checks its own claim
    text = atlas_text()
    for ex in ("local_attention", "hierarchical_docs", "self_attention", "hard_vs_soft", "cnn_attention"):
        assert f"`examples/{ex}.py`" in text, ex
        with open(os.path.join(ROOT, "examples", f"{ex}.py"), encoding="utf-8") as f:
            src = f.read()
        assert "# %%" in src and "PASS" in src and "FAIL" in src, ex


@pytest.mark.parametrize("typo", [
    "`tinyattn/attention/locall.py`",                                       # a file that is not there
    "`tests/test_seed_layers.py::test_cosine_matches_numpy_and_gradcheck`",  # a test name off by a letter
    "`examples/hard_vs_soft_.py`",
    "`tests/test_nothing.py::test_x`",
    "`tinyattn/attention/local.py::test_local`",                            # a test id in a non-test file
])
def test_the_path_check_fails_on_a_typo(typo):
    assert missing_paths(atlas_text() + "\n" + typo + "\n")


def test_the_name_check_fails_on_a_missing_name():
    text = atlas_text().replace("`LocalPredictiveAttention`", "LocalPredictiveAttention")
    assert [n for n in public_names() if f"`{n}`" not in text] == ["LocalPredictiveAttention"]
