"""Hostile uploads (issue 19, items 1, 7, 11): every resource limit refuses before the work it
bounds, every malformed zip ends in a DataError naming a member (never a server path) and leaves
nothing extracted, and uploads live under the runs folder, content-addressed, links replaced."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib

import pytest
from PIL import Image

from dsg_core.data.archive import safe_extract
from dsg_core.data.folder import load_image_folder, load_images
from dsg_core.errors import ConfigError, DataError
from dsg_core.limits import Limits, check_set_size, limits
from dsg_core.models import get_spec


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png(w: int, h: int) -> bytes:
    """A valid bilevel PNG of w x h built row by row with zlib: a 12000x12000 one is ~20 KB."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    row = b"\0" + b"\0" * ((w + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_many_tiny_images_for_a_large_model_are_refused_before_decoding(tmp_path, monkeypatch):
    """Attack: 1000 1x1 PNGs (a 156 KB zip) for resnet18 decoded to 1.17 GB. Now: refused from the
    file count x the model's input size, before a single image is opened."""
    root = safe_extract(_zip({f"7/{i}.png": png(1, 1) for i in range(1000)}), tmp_path / "up")
    opened = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or pytest.fail("decoded"))
    with pytest.raises(DataError, match=r"1000 images at the model's input size \(3, 224, 224\) take 574 MiB"):
        load_image_folder(root, get_spec("resnet18"))
    assert not opened


def test_a_huge_image_is_refused_not_warned(tmp_path):
    """Attack: a 12000x12000 PNG (144 Mpx) got only PIL's DecompressionBombWarning and 69 MB each."""
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "big.png").write_bytes(png(12000, 12000))
    with pytest.raises(DataError, match=r"'3/big.png' is 12000x12000 pixels; the limit is 40 megapixels"):
        load_image_folder(tmp_path, get_spec("resnet20_mnist"))
    with pytest.raises(DataError, match="megapixels in all"):
        load_images(tmp_path, get_spec("resnet20_mnist"), limit_of=Limits(image_pixels=10**9, total_pixels=10**6))


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DSG_LIMIT_IMAGES", "5")
    assert limits().images == 5
    monkeypatch.setenv("DSG_LIMIT_IMAGES", "-1")
    with pytest.raises(ConfigError, match="DSG_LIMIT_IMAGES"):
        limits()
    monkeypatch.delenv("DSG_LIMIT_IMAGES")
    with pytest.raises(ConfigError, match="limit for one set"):
        check_set_size(1_000_000_000, (1, 28, 28))
    check_set_size(64, (3, 224, 224))


def test_error_messages_name_files_not_server_paths(tmp_path):
    (tmp_path / "secret" / "7").mkdir(parents=True)
    (tmp_path / "secret" / "7" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as err:
        load_image_folder(tmp_path / "secret", get_spec("resnet20_mnist"))
    assert "'7/x.png'" in str(err.value) and str(tmp_path) not in str(err.value)


def _patched(data: bytes, offset_local: int, offset_central: int, fmt: str, value: int) -> bytes:
    """The zip with one field of its (single) member's local and central headers rewritten."""
    b = bytearray(data)
    local, central = b.rfind(b"PK\x03\x04"), b.find(b"PK\x01\x02")
    struct.pack_into(fmt, b, local + offset_local, value)
    struct.pack_into(fmt, b, central + offset_central, value)
    return bytes(b)


def _stored(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _understated() -> bytes:
    """A good member, then one whose header says 10 bytes where 100 are stored (sizes at 18/22 in
    the local header, 20/24 in the central one)."""
    data = _stored({"3/good.png": b"g" * 10, "3/liar.png": b"x" * 100})
    b = bytearray(data)
    central = b.rfind(b"PK\x01\x02")
    local = b.rfind(b"PK\x03\x04")
    for off in (18, 22):
        struct.pack_into("<I", b, local + off, 10)
    for off in (20, 24):
        struct.pack_into("<I", b, central + off, 10)
    return bytes(b)


def _twice() -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate, and writes it
        zf.writestr("3/a.png", b"x")
        zf.writestr("3/a.png", b"y")
    return buf.getvalue()


@pytest.mark.parametrize("attack, data, message", [
    ("understated size", _understated(), "liar.png"),
    ("encrypted member", _patched(_stored({"3/a.png": b"x"}), 6, 8, "<H", 1), "encrypted"),
    ("compression method 99", _patched(_stored({"3/a.png": b"x"}), 8, 10, "<H", 99), "compression method 99"),
    ("a file beside a folder of the same name", _zip({"0": b"x", "0/a.png": b"y"}), "both a file and a folder"),
    ("a name twice", _twice(), "twice"),
])
def test_malformed_zips_are_data_errors_and_leave_nothing(tmp_path, attack, data, message):
    """Attacks: BadZipFile, RuntimeError, NotImplementedError and FileExistsError escaped the upload
    page, after earlier members were already written and left."""
    with pytest.raises(DataError, match=message):
        safe_extract(data, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [], attack


def test_uploads_live_under_the_runs_folder_and_links_are_replaced(tmp_path, monkeypatch):
    """Attack: uploads went to a fixed /tmp/dsg_lab_uploads whatever DSG_RUNS_DIR said, a link there
    was followed, and nothing was ever cleaned up."""
    import os
    import time

    from dashboard import byom
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path / "runs"))
    victim = tmp_path / "victim"
    victim.mkdir()
    digest = byom.digest(b"weights")
    (tmp_path / "runs" / "uploads").mkdir(parents=True)
    (tmp_path / "runs" / "uploads" / digest).symlink_to(victim)  # planted where the upload will go
    path = byom.save_upload(b"weights", "../../my [model](x).pt")
    assert path == tmp_path / "runs" / "uploads" / digest / "my__model__x_.pt"
    assert path.read_bytes() == b"weights" and list(victim.iterdir()) == []
    assert byom.save_upload(b"weights", "my [model](x).pt") == path  # content-addressed: found again
    root = byom.extract_images(_zip({"3/a.png": png(2, 2)}))
    assert root.parent == tmp_path / "runs" / "uploads" and (root / "3" / "a.png").is_file()
    old = time.time() - 2 * byom.KEEP_SECONDS
    for i in range(byom.KEEP_UPLOADS + 3):
        (tmp_path / "runs" / "uploads" / f"old{i}").mkdir()
        os.utime(tmp_path / "runs" / "uploads" / f"old{i}", (old - i, old - i))
    assert len(byom.prune(tmp_path / "runs" / "uploads")) == 5  # 16 kept; the two fresh ones are among them
    assert path.is_file() and root.is_dir()
