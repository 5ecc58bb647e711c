"""Run keys derived, not listed: the modules a setting imports (store.import_closure), the hash of their source
(store.source_hash_of), and the fingerprint of a classifier (features.model_fingerprint)."""
import copy
import io
import json
import re
import shutil
import subprocess
import sys
import tokenize

import pytest

from resonance_utils import store


# ----------------------------------------------------------------------------------------- the closures
def _defining(name: str) -> str:
    """The package module that defines the function or class `name` (found in the sources, so that these tests
    follow a function that moves to another module)."""
    found = [m for m in store.package_modules()
             if re.search(rf"^(def|class) {name}\b", (store.PACKAGE_DIR / f"{m}.py").read_text(), re.M)]
    assert len(found) == 1, (name, found)
    return found[0]


def test_the_settings_closures_hold_what_their_code_imports():
    image = store.import_closure("image_chains")
    # chain, diffusion, store at the top of image_chains.py; data, features, metrics, runtime inside its
    # functions; the hand-kept SOURCES lists missed the modules of these functions (issue 14)
    assert {"image_chains", "chain", "diffusion", "store", "data", "features", "metrics", "runtime"} <= set(image)
    for setting, used in {"image_chains": ["class_histogram_entropy", "retention_classifier", "run_chain"],
                          "audio": ["parse_vector", "run_chain", "file_fingerprint"],
                          "cyclegan": ["holdout_split", "run_chain", "to_float"]}.items():
        closure = store.import_closure(setting)
        for name in used:
            assert _defining(name) in closure, (setting, name, _defining(name))
    assert {"features", "data", "attractors", "chain", "store"} <= set(store.import_closure("cyclegan"))
    assert {"audio", "cyclegan", "image_chains", "claim"} <= set(store.import_closure("claim_runs"))
    assert not {"coevolution", "gaussian_refit", "claim", "claim_runs", "run_notebooks"} & set(image)
    assert list(image) == sorted(image) and store.import_closure("resonance_utils.image_chains") == image
    # imported only inside a function of image_chains: lazy imports count
    assert _defining("class_histogram_entropy") in store.imported_modules("image_chains")


def _text_imports(source: str, package: str) -> set[str]:
    """A second reading, without ast: blank out strings and comments (tokenize), then find import statements
    with regular expressions, wherever they stand (inside functions too)."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    text = list(source)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            a = offsets[tok.start[0] - 1] + tok.start[1]
            b = offsets[tok.end[0] - 1] + tok.end[1]
            text[a:b] = [c if c == "\n" else " " for c in text[a:b]]
    code = "".join(text)
    found = set()
    for dots, mod, grouped, names in re.findall(
            r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(?:\(([^)]*)\)|([\w \t,]+))", code, re.M):
        names = grouped or names
        if dots == "." or (not dots and (mod == package or mod.startswith(package + "."))):
            base = mod[len(package):].lstrip(".") if not dots else mod
            if base:
                found.add(base.split(".")[0])
            else:
                found |= {n.split()[0] for n in names.split(",") if n.split()}
    for names in re.findall(r"^[ \t]*import[ \t]+([\w \t,.]+)", code, re.M):
        for n in names.split(","):
            parts = n.split()
            if parts and parts[0].startswith(package + "."):
                found.add(parts[0].split(".")[1])
    return found


def test_the_ast_reading_agrees_with_a_text_reading_of_every_module():
    modules = set(store.package_modules())
    for m in store.package_modules():
        text = _text_imports((store.PACKAGE_DIR / f"{m}.py").read_text(), store.PACKAGE) & modules - {m}
        assert set(store.imported_modules(m)) == text, m


def test_the_closure_covers_every_module_an_import_loads(tmp_path):
    """Import each module in a fresh interpreter state (the package's entries removed from sys.modules between
    them) and list the package modules that loaded: the eager imports. The AST closure must hold each of them;
    it holds more (the lazy imports, which an import does not run)."""
    script = (
        "import importlib, json, sys\n"
        f"mods = {list(store.package_modules())!r}\n"
        "out = {}\n"
        "for m in mods:\n"
        f"    for k in [k for k in sys.modules if k == {store.PACKAGE!r} or k.startswith({store.PACKAGE!r} + '.')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        f"        importlib.import_module({store.PACKAGE!r} + '.' + m)\n"
        "    except Exception as e:\n"
        "        out[m] = f'{type(e).__name__}: {e}'\n"
        "        continue\n"
        f"    out[m] = sorted(k.split('.', 1)[1] for k in sys.modules if k.startswith({store.PACKAGE!r} + '.'))\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=store.PACKAGE_DIR.parent, capture_output=True,
                          text=True, timeout=300, env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    eager = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(eager) == set(store.package_modules())
    broken = {m: e for m, e in eager.items() if isinstance(e, str)}
    assert not broken, f"modules that fail to import: {broken}"
    for m, loaded in eager.items():
        closure = set(store.import_closure(m))
        assert m in loaded and set(loaded) <= closure, (m, set(loaded) - closure)
    assert _defining("run_chain") in eager["image_chains"]  # the reference sees eager imports...
    assert _defining("class_histogram_entropy") not in eager["image_chains"]  # ...not lazy ones, which count


def _package_copy(tmp_path, monkeypatch):
    copy_dir = tmp_path / "src" / store.PACKAGE
    shutil.copytree(store.PACKAGE_DIR, copy_dir, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(store, "PACKAGE_DIR", copy_dir)
    return copy_dir


def test_the_import_forms_that_count(tmp_path, monkeypatch):
    pkg = tmp_path / store.PACKAGE
    pkg.mkdir()
    files = {
        "__init__": "from . import boot\n__version__ = '1'\n",
        "top": ("import numpy\nimport resonance_utils.g as gg\nfrom . import a, b, not_a_module\n"
                "from .c import thing\n\n\ndef f():\n    from .. import outside\n    import resonance_utils.d\n"
                "    from resonance_utils import e\n    from resonance_utils.f import g as h\n"
                "    '''from . import lonely'''  # from . import lonely\n"),
        "a": "from .t import x\n",
        "t": "", "b": "", "c": "", "d": "", "e": "", "f": "", "g": "", "boot": "", "outside": "", "lonely": "",
    }
    for name, text in files.items():
        (pkg / f"{name}.py").write_text(text)
    monkeypatch.setattr(store, "PACKAGE_DIR", pkg)
    assert store.imported_modules("top") == ("a", "b", "c", "d", "e", "f", "g")
    assert store.import_closure("top") == ("a", "b", "boot", "c", "d", "e", "f", "g", "t", "top")
    assert store.import_closure("lonely") == ("boot", "lonely")  # what __init__ imports runs first
    (pkg / "t.py").write_text("from . import lonely\n")  # an edit is seen at once, no stale answer
    assert "lonely" in store.import_closure("top")


# ------------------------------------------------------------------------------------- keys follow the code
def test_editing_a_module_the_setting_reaches_changes_its_key_and_editing_another_does_not(tmp_path, monkeypatch):
    pkg = _package_copy(tmp_path, monkeypatch)
    SETTING = "cyclegan"  # it reaches geometry and metrics only through attractors
    closure = store.import_closure(SETTING)
    indirect = set(closure) - set(store.imported_modules(SETTING)) - {SETTING}
    assert indirect, "the setting reaches no module only through another: pick another example"
    outside = set(store.package_modules()) - set(closure)
    assert {"coevolution", "gaussian_refit"} <= outside
    params = {"strength": 0.3}

    def keys():
        return (store.source_hash_of(SETTING),
                store.run_key(params, "fp", store.source_hash_of(SETTING)),
                store.run_dir(SETTING, params, "fp", modules=store.import_closure(SETTING)))

    before = keys()
    assert before[2].name == before[1]
    assert json.loads((before[2] / "run.json").read_text())["source_modules"] == list(closure)
    for m in sorted(outside):
        path = pkg / f"{m}.py"
        path.write_text(path.read_text() + "\n# an unrelated edit\n")
        assert keys() == before, f"editing {m}, which the setting never imports, changed its key"
    for m in sorted(indirect) + [_defining("class_histogram_entropy"), SETTING]:
        path = pkg / f"{m}.py"
        original = path.read_text()
        path.write_text(original + "\n# an edit\n")
        after = keys()
        assert after[0] != before[0] and after[1] != before[1] and after[2] != before[2], m
        path.write_text(original)
    assert keys() == before


def test_a_bad_module_name_is_a_value_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"'image_chain'.*valid: .*image_chains"):
        store.import_closure("image_chain")
    with pytest.raises(ValueError, match="'nope'"):
        store.source_hash_of("nope")
    with pytest.raises(ValueError, match="'__init__'"):
        store.imported_modules("__init__")


# ------------------------------------------------------------------------------------ model fingerprints
def test_model_fingerprint_follows_every_weight_and_buffer():
    import torch
    import torch.nn as nn

    from resonance_utils.features import MnistClassifier, SynsetClassifier, model_fingerprint

    torch.manual_seed(0)
    model = MnistClassifier()
    fp = model_fingerprint(model)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    twin = copy.deepcopy(model)
    assert model_fingerprint(twin) == fp and model_fingerprint(twin.eval()) == fp
    with torch.no_grad():
        twin.fc2.bias[3] += 1e-6
    assert model_fingerprint(twin) != fp
    with torch.no_grad():
        twin.fc2.bias[3] = model.fc2.bias[3]
    assert model_fingerprint(twin) == fp
    assert model_fingerprint(copy.deepcopy(model).double()) != fp  # the dtype counts
    assert model_fingerprint(MnistClassifier(n_classes=10)) != fp  # other weights

    bn = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    fp_bn = model_fingerprint(bn)
    bn[1].running_var[0] = 2.0  # a buffer, not a parameter
    assert model_fingerprint(bn) != fp_bn

    head = nn.Linear(4, 1000)  # a classifier whose state_dict is the same, its class indices not
    assert model_fingerprint(SynsetClassifier(head, [1, 2])) != model_fingerprint(SynsetClassifier(head, [1, 3]))


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_model_fingerprint_is_the_same_on_the_gpu():
    from resonance_utils.features import MnistClassifier, model_fingerprint

    model = MnistClassifier()
    assert model_fingerprint(copy.deepcopy(model).cuda()) == model_fingerprint(model)
