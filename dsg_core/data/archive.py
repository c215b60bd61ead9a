"""Safe unpacking of an uploaded zip of labelled images (ImageFolder layout).

Every member is vetted before anything is written: no absolute paths, no ``..``, no links, and
bounded file count and unpacked size (a zip bomb is refused from its directory, and a member whose
data is longer than its header claims is refused too). Images are later decoded by PIL with its
decompression-bomb guard on (``dsg_core.data.folder``).
"""

from __future__ import annotations

import stat
import zipfile
from io import BytesIO
from pathlib import Path, PurePosixPath

from ..errors import DataError

MAX_FILES = 20_000
MAX_UNZIPPED_BYTES = 512 * 2**20


def safe_extract(data: bytes, dest: Path, max_files: int = MAX_FILES,
                 max_bytes: int = MAX_UNZIPPED_BYTES) -> Path:
    """Extract a zip after vetting every member; returns the ImageFolder root inside it."""
    try:
        zf = zipfile.ZipFile(BytesIO(data))
    except zipfile.BadZipFile:
        raise DataError("the test-image upload is not a zip file") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > max_files:
            raise DataError(f"the zip holds {len(members)} files; the limit is {max_files}")
        if sum(m.file_size for m in members) > max_bytes:
            raise DataError(f"the zip unpacks to more than {max_bytes // 2**20} MiB")
        for m in members:
            _check_member(m)
        dest.mkdir(parents=True, exist_ok=True)
        for m in members:
            target = dest / PurePosixPath(m.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src:
                payload = src.read(max_bytes + 1)
            if len(payload) != m.file_size:  # a lying header: refuse rather than trust it
                raise DataError(f"{m.filename}: size does not match the zip's directory")
            target.write_bytes(payload)
    return image_root(dest)


def _check_member(m: zipfile.ZipInfo) -> None:
    p = PurePosixPath(m.filename.replace("\\", "/"))
    if p.is_absolute() or m.filename.startswith(("/", "\\")) or (len(p.parts) and ":" in p.parts[0]):
        raise DataError(f"refusing {m.filename!r}: absolute paths are not allowed in the zip")
    if ".." in p.parts:
        raise DataError(f"refusing {m.filename!r}: '..' in a path could write outside the upload folder")
    if stat.S_ISLNK(m.external_attr >> 16):
        raise DataError(f"refusing {m.filename!r}: links are not allowed in the zip")


def image_root(root: Path) -> Path:
    """Descend through single wrapper folders (e.g. test/) to the folder whose subfolders are classes."""
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(("__MACOSX", "."))]
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) == 1 and len(entries) == 1 and any(e.is_dir() for e in dirs[0].iterdir()):
            root = dirs[0]
        else:
            return root
