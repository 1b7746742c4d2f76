"""File access to a study folder on a local path or a URI (``s3://``, ``gs://``, ``file://``),
through pyarrow's filesystems. Nothing in a study folder names where it lives, so a folder can
be copied or moved (or resumed from another head node, for a URI) and used there."""

from __future__ import annotations

from pathlib import Path

from pyarrow import fs as pafs

EXPERIMENT = "trials"
"""The study's one Ray Tune experiment, a folder of the study: every search and evaluation
trial (folders ``PHASE-STRATEGY_ID``) and Ray's snapshots of them."""


class StudyFolder:
    """File access to a study folder on a local path or a URI (through pyarrow.fs)."""

    def __init__(self, root: str) -> None:
        self.uri = "://" in root
        if self.uri:
            self.fs, self.path = pafs.FileSystem.from_uri(root)
            self.root = root.rstrip("/")
        else:
            self.fs, self.path = pafs.LocalFileSystem(), str(Path(root).resolve())
            self.root = self.path

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(f"{self.path}/{name}").type != pafs.FileType.NotFound

    def read_text(self, name: str) -> str:
        with self.fs.open_input_stream(f"{self.path}/{name}") as f:
            return f.read().decode()

    def write_text(self, name: str, text: str) -> None:
        self.fs.create_dir(self.path, recursive=True)
        tmp = f"{self.path}/{name}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(text.encode())
        self.fs.move(tmp, f"{self.path}/{name}")

    def download(self, name: str, dest: Path) -> None:
        with self.fs.open_input_stream(f"{self.path}/{name}") as f:
            dest.write_bytes(f.read())

    def upload(self, src: Path, name: str) -> None:
        """Copy a local file in as ``name`` (through a temporary name, then a move)."""
        tmp = f"{self.path}/{name}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(src.read_bytes())
        self.fs.move(tmp, f"{self.path}/{name}")

    @property
    def experiment(self) -> str:
        """The study's experiment folder as the user names it (a path or a URI)."""
        return f"{self.root}/{EXPERIMENT}"

    @property
    def experiment_path(self) -> str:
        """The study's experiment folder on the filesystem ``fs``."""
        return f"{self.path}/{EXPERIMENT}"
