"""The install the README makes: a folder named ``s2pdata`` beside a script never shadows the package."""

import subprocess
import sys
from pathlib import Path

import s2pdata

ROOT = Path(s2pdata.__file__).resolve().parents[1]


def test_a_folder_named_like_the_package_does_not_shadow_it(tmp_path):
    # What ``git clone URL s2pdata`` leaves: a folder named s2pdata (no __init__.py) in the folder a
    # script runs from. Python puts that folder first on sys.path; an editable install made by a meta-path
    # finder (setuptools' default) loses to it and the clone imports as an empty namespace package. The
    # README's editable_mode=compat puts the checkout on sys.path as a path entry, where the real package wins.
    (tmp_path / "s2pdata").mkdir()
    (tmp_path / "script.py").write_text("import s2pdata.shards\nprint(s2pdata.__file__, s2pdata.shards.ShardError)\n")
    run = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (
        f"{run.stderr.strip().splitlines()[-1:]}: install s2pdata as the README does "
        '(pip install -e ".[all]" --config-settings editable_mode=compat)'
    )
    assert run.stdout.startswith(str(ROOT / "s2pdata" / "__init__.py"))
