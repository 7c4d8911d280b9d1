"""Import every module from the installed package: a folder missing from setup.py's
``packages`` or a module that fails at import shows up here, not on a user's machine."""

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"sdk": "saliq", "train": "saliq.train", "export": "saliq.export"}


def _modules():
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts))


@pytest.mark.parametrize("name", list(_modules()))
def test_module_imports(name):
    module = importlib.import_module(name)
    assert module.__name__ == name


def test_sdk_does_not_import_torch_eagerly():
    import subprocess
    import sys

    code = "import sys, saliq; saliq.load; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_default_model_ships_in_the_package():
    from saliq.assess import DEFAULT_MODEL_DIR

    names = {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    stem = "saliq_sgdnet_views_lite0"
    assert {f"{stem}.onnx", f"{stem}.safetensors", "MODEL_CARD.md"} <= names


def test_every_package_folder_is_listed_in_setup_py():
    """A folder missing from PACKAGES imports in an editable install but not from a wheel."""
    import re

    listed = set(
        re.findall(r'^\s+"saliq[\w.]*": "([\w/]+)",$', (REPO / "setup.py").read_text(), re.M)
    )
    folders = {
        str(init.parent.relative_to(REPO))
        for top in FOLDERS
        for init in (REPO / top).rglob("__init__.py")
    }
    assert folders - listed == set(), f"add to setup.py PACKAGES: {sorted(folders - listed)}"
