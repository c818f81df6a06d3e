"""`ctax run` on a port another process holds stops at once with one line, before starting anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, free_port


def test_ctax_run_on_a_taken_port_says_so_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = subprocess.run([sys.executable, "-m", "ctax", "run", "--port", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                   "CTAX_DATA_DIR": str(tmp_path / "var"), "CTAX_OCR_BACKEND": "onnxruntime"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"error: cannot serve the API on 127.0.0.1:{port}: Address already in use (another "
                                   "ctax run, or another server?): stop it, or choose another port with --port or "
                                   "CTAX_PORT"), done.stderr
    assert "ctax running" not in done.stdout and not (tmp_path / "var" / "ctax.db").exists()  # nothing migrated
