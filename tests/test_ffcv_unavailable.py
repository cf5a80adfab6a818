"""Without FFCV or its system libraries, ``--pipeline ffcv`` says what to install and exits 2.

The real CLI in a subprocess whose import system refuses FFCV: as a missing package
(ImportError) and as a missing shared library (OSError, what loading libffcv without
libturbojpeg or OpenCV raises). These run whether FFCV is installed or not.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

RUN_WITHOUT_FFCV = """
import sys

class NoFFCV:
    def find_spec(self, name, path=None, target=None):
        if name == "ffcv" or name.startswith("ffcv."):
            if sys.argv[1] == "package":
                raise ModuleNotFoundError("No module named 'ffcv'", name=name)
            raise OSError("libturbojpeg.so.0: cannot open shared object file: No such file or directory")
        return None

sys.meta_path.insert(0, NoFFCV())
for name in [m for m in sys.modules if m == "ffcv" or m.startswith("ffcv.")]:
    del sys.modules[name]
from bench.run import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("missing,reason", [("package", "No module named 'ffcv'"), ("library", "libturbojpeg.so.0: cannot open shared object file")])
def test_the_cli_says_what_to_install(cli_env, tmp_path, missing, reason):
    out = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_FFCV, missing, "--pipeline", "ffcv", "--out", str(tmp_path)],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "--pipeline: pipeline 'ffcv' is not available" in out.stderr and reason in out.stderr
    assert "apt-get install libopencv-dev libturbojpeg0-dev pkg-config, then pip install -e '.[ffcv]'" in out.stderr
    assert not (tmp_path / "records").exists()
