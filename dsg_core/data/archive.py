"""Safe unpacking of an uploaded zip of labelled images (ImageFolder layout).

Every member is vetted from the zip's directory before anything is written: no absolute paths, no
``..``, no links, no encrypted members or unknown compression methods, no name that is both a file
and a folder, and bounded file count and unpacked size (``dsg_core.limits``). Extraction goes into
a private folder that is renamed into place only when complete and removed on any failure, so a
zip that lies (a member longer than its header says, a bad CRC) leaves nothing behind. Messages name
members, never server paths. Images are decoded later, with their own limits (``dsg_core.data.folder``).
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
import zlib
from io import BytesIO
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..limits import Limits, limits

SUPPORTED = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
CHUNK = 1 << 20


def safe_extract(data: bytes, dest: Path, limit: Limits | None = None) -> Path:
    """Extract a zip after vetting every member into ``dest`` (created whole, or not at all);
    returns the ImageFolder root inside it. An existing ``dest`` is taken as the same upload
    already extracted (callers name it by the content's hash)."""
    limit = limit or limits()
    dest = Path(dest)
    if dest.is_dir() and not dest.is_symlink():
        return image_root(dest)
    try:
        zf = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise DataError("the test-image upload is not a zip file") from None
    with zf:
        members = vet(zf.infolist(), limit)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
        try:
            for m in members:
                _extract(zf, m, tmp / PurePosixPath(m.filename))
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return image_root(dest)


def vet(infos: list[zipfile.ZipInfo], limit: Limits) -> list[zipfile.ZipInfo]:
    """The file members, after every check that the directory alone allows; raises DataError."""
    members = [m for m in infos if not m.is_dir()]
    if len(members) > limit.images:
        raise DataError(f"the zip holds {len(members)} files; the limit is {limit.images}")
    if sum(m.file_size for m in members) > limit.unzipped_bytes:
        raise DataError(f"the zip unpacks to more than {limit.unzipped_bytes // 2**20} MiB (the limit)")
    for m in infos:
        _check_member(m)
    files = [PurePosixPath(m.filename) for m in members]
    folders = {p for f in files for p in f.parents} | {PurePosixPath(m.filename) for m in infos if m.is_dir()}
    seen: set[PurePosixPath] = set()
    for f in files:
        if f in folders or f in seen:
            raise DataError(f"refusing {str(f)!r}: the zip has it twice, or as both a file and a folder")
        seen.add(f)
    return members


def _check_member(m: zipfile.ZipInfo) -> None:
    p = PurePosixPath(m.filename.replace("\\", "/"))
    if p.is_absolute() or m.filename.startswith(("/", "\\")) or (len(p.parts) and ":" in p.parts[0]):
        raise DataError(f"refusing {m.filename!r}: absolute paths are not allowed in the zip")
    if ".." in p.parts or "\\" in m.filename:
        raise DataError(f"refusing {m.filename!r}: '..' or '\\' in a path could write outside the upload folder")
    if stat.S_ISLNK(m.external_attr >> 16):
        raise DataError(f"refusing {m.filename!r}: links are not allowed in the zip")
    if m.flag_bits & 0x1:
        raise DataError(f"refusing {m.filename!r}: encrypted members are not supported")
    if m.compress_type not in SUPPORTED:
        raise DataError(f"refusing {m.filename!r}: compression method {m.compress_type} is not supported "
                        "(use deflate or store)")


def _extract(zf: zipfile.ZipFile, m: zipfile.ZipInfo, target: Path) -> None:
    """Copy one member in chunks, refusing data longer than its header claims (a zip bomb's lie)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with zf.open(m) as src, open(target, "xb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > m.file_size:
                    break
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise DataError(f"cannot extract {m.filename!r} from the zip: {type(exc).__name__}") from None
    if written != m.file_size:
        raise DataError(f"refusing {m.filename!r}: its size does not match the zip's directory")


def image_root(root: Path) -> Path:
    """Descend through single wrapper folders (e.g. test/) to the folder whose subfolders are classes."""
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(("__MACOSX", "."))]
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) == 1 and len(entries) == 1 and any(e.is_dir() for e in dirs[0].iterdir()):
            root = dirs[0]
        else:
            return root
