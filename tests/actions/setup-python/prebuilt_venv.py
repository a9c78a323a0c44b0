"""Place a copy of an installed project venv at a workspace's .venv, as `make install` would have
left it there: hard links (seconds, not a 3 GB copy), with every file that differs written anew
(never in place, so the source venv is untouched): the scripts' shebangs and the editable install
of ftlab point into this workspace, and the install stamp is newer than the workspace's
pyproject.toml, so `make install` finds nothing to do.

usage: prebuilt_venv.py SOURCE_VENV WORKSPACE/.venv
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def rewrite(path: Path, data: bytes) -> None:
    """A new file at ``path`` (a hard link's other names keep the old content)."""
    mode = path.stat().st_mode
    path.unlink()
    path.write_bytes(data)
    path.chmod(mode)


def main(source: Path, venv: Path) -> None:
    if venv.exists():
        sys.exit(f"{venv} exists: the workspace was not clean")
    if subprocess.run(["cp", "-al", str(source), str(venv)]).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        shutil.copytree(source, venv, symlinks=True)  # another filesystem: a real copy
    old, new = f"#!{source.resolve()}/bin/python".encode(), f"#!{venv}/bin/python".encode()
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(old):
                rewrite(script, new + data[len(old):])
    workspace = venv.parent
    for pth in venv.glob("lib/python*/site-packages/__editable__.ftlab-*.pth"):
        rewrite(pth, f"{workspace / 'src'}\n".encode())
    for name in (".ftlab-installed", ".ftlab-test-installed"):  # make install, then make install-test: in that order
        stamp = venv / name
        if stamp.exists():
            stamp.unlink()
        stamp.touch()
    print(f"prebuilt venv: {source} -> {venv}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
