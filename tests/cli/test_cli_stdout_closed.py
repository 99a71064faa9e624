"""``engramloop ... | head``: a reader that closes stdout early is not a bug in engramloop.

Before this test, ``engramloop score X.npz | head -3`` printed "internal error:
BrokenPipeError ... (a bug in engramloop: please report it ...)" and exited 70. Now the
command stops with one line on stderr (exit 141, as a shell reports SIGPIPE); a broken pipe
anywhere else is still an internal error.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_output_piped_into_head_is_not_an_internal_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r, w = os.pipe()
    os.close(r)                         # the reader is gone before anything is written
    p = subprocess.Popen([sys.executable, "-m", "engramloop", "config-reference"],
                         stdout=w, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    os.close(w)
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert "internal error" not in err and "Traceback" not in err, err
    assert rc == 141, (rc, err)
    assert err.strip().splitlines() == ["stopped: the program reading engramloop's output "
                                        "closed it (broken pipe)"]
