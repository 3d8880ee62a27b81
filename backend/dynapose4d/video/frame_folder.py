"""Frame folders: a user's folder of frames, or a zip of one, turned into the job's frame folder.

A zip comes from a stranger (an upload) as often as from the user, so it is read as hostile:
every member is checked before a byte is written, and the bytes written are counted again while
they are written (the sizes in a zip's directory are claims, not facts).

Refused, each with a message naming the member and the limit:

- names that are absolute, carry a drive letter, or climb out with ``..`` (path traversal);
- symbolic links (Unix mode in the member's external attributes) and encrypted members;
- more than ``max_members`` members, more than ``max_total_bytes`` uncompressed, or a member
  whose uncompressed size is more than ``max_ratio`` times its compressed size (zip bombs);
- members that are not images (by suffix), except the clutter archivers add
  (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``), which is skipped.

Members are never extracted under their own names: image ``i`` (in the natural order of the
member paths, so ``f2.png`` comes before ``f10.png``) becomes ``frame_<i>.<suffix>`` in the
destination, which the video reader then reads as a frame folder.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..formats import FRAME_ARCHIVE_SUFFIXES, IMAGE_SUFFIXES

__all__ = ["FrameZipError", "FrameZipLimits", "extract_frames_zip", "copy_frame_folder", "frame_files", "import_frames"]

_CLUTTER = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)


class FrameZipError(ValueError):
    """A frame folder or zip that cannot be used. ``too_large``: a size or count limit was hit
    (a server answers 413), otherwise the content is wrong (422)."""

    def __init__(self, message: str, *, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class FrameZipLimits:
    """Limits on a zip of frames (defaults: 2,000 frames, 2 GiB of pixels, ratio 200).

    PNG and JPEG frames barely compress (ratio near 1); a flat uncompressed BMP or TIFF can
    reach 100+. Deflate cannot exceed about 1030, so a ratio above ``max_ratio`` on a large
    member is a bomb, not a frame; small members are exempt (a tiny flat image may compress well).
    """

    max_members: int = 2000
    max_total_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0
    ratio_exempt_bytes: int = 1024 * 1024


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix archivers keep st_mode in the high 16 bits of the external attributes.
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_name(name: str, zip_name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or path.is_absolute():
        raise FrameZipError(f"{zip_name}: member {name!r} has an absolute path; a zip of frames holds relative names only")
    if ".." in path.parts:
        raise FrameZipError(f"{zip_name}: member {name!r} points outside the archive ('..'); refused")
    return path


def _plan(zf: zipfile.ZipFile, zip_name: str, limits: FrameZipLimits) -> list[zipfile.ZipInfo]:
    """The image members to extract, in frame order, after every check; raises FrameZipError."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise FrameZipError(f"{zip_name} has {len(infos):,} members, more than the limit of {limits.max_members:,} frames", too_large=True)
    images, total = [], 0
    for info in infos:
        path = _check_name(info.filename, zip_name)
        if _is_symlink(info):
            raise FrameZipError(f"{zip_name}: member {info.filename!r} is a symbolic link; a zip of frames may hold image files only")
        if info.is_dir() or _CLUTTER.search(info.filename):
            continue
        if info.flag_bits & 0x1:
            raise FrameZipError(f"{zip_name}: member {info.filename!r} is encrypted; zip the frames without a password")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise FrameZipError(
                f"{zip_name}: member {info.filename!r} is not an image; a zip of frames may hold only {', '.join(IMAGE_SUFFIXES)} files"
            )
        if info.file_size > limits.ratio_exempt_bytes and info.file_size > limits.max_ratio * max(1, info.compress_size):
            raise FrameZipError(
                f"{zip_name}: member {info.filename!r} expands {info.file_size / max(1, info.compress_size):,.0f} times "
                f"(limit {limits.max_ratio:g}); a zip bomb is refused", too_large=True
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise FrameZipError(
                f"{zip_name} expands to more than {limits.max_total_bytes / 2**20:,.0f} MiB; send fewer or smaller frames", too_large=True
            )
        images.append(info)
    if not images:
        raise FrameZipError(f"{zip_name} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(images, key=lambda info: _natural_key(info.filename))


def extract_frames_zip(zip_path: str | Path, dest: str | Path, limits: FrameZipLimits = FrameZipLimits(), *, name: str | None = None) -> int:
    """Check ``zip_path`` and write its images into the new folder ``dest`` as ``frame_<i>``
    files; returns the number of frames. ``name`` is how messages call the zip (default: its
    file name). On any refusal nothing is left in ``dest``."""
    zip_name = name or Path(zip_path).name
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        why = str(exc) if isinstance(exc, zipfile.BadZipFile) else type(exc).__name__  # an OSError names our path
        raise FrameZipError(f"{zip_name} is not a readable zip file ({why})") from None
    with zf:
        members = _plan(zf, zip_name, limits)
        dest.mkdir(parents=True, exist_ok=False)
        try:
            written = 0
            for i, info in enumerate(members):
                target = dest / f"frame_{i:05d}{PurePosixPath(info.filename).suffix.lower()}"
                with zf.open(info) as src, open(target, "wb") as out:
                    size = 0
                    while chunk := src.read(1 << 20):
                        size += len(chunk)
                        written += len(chunk)
                        # The directory's sizes are claims: the bytes themselves are counted too.
                        if size > info.file_size or written > limits.max_total_bytes:
                            raise FrameZipError(f"{zip_name}: member {info.filename!r} holds more bytes than its header says; refused", too_large=True)
                        out.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise FrameZipError(f"{zip_name} could not be extracted ({type(exc).__name__}); zip the frames again") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return len(members)


def frame_files(folder: str | Path) -> list[Path]:
    """The frames of a folder in natural order: what ``video.read_frames`` reads, and what the
    CLI and the server copy."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("mask_")]
    return sorted(files, key=lambda p: _natural_key(p.name))


def copy_frame_folder(src: str | Path, dest: str | Path) -> int:
    """Copy the frames of the folder ``src`` (not its other files, not its subfolders, no links)
    into the new folder ``dest``; returns the number of frames."""
    src = Path(src)
    files = [p for p in frame_files(src) if not p.is_symlink()]
    if not files:
        raise FrameZipError(f"the folder {src} holds no image files ({', '.join(IMAGE_SUFFIXES)}); give a folder of frames")
    Path(dest).mkdir(parents=True, exist_ok=False)
    for p in files:
        shutil.copyfile(p, Path(dest) / p.name)
    return len(files)


def import_frames(src: str | Path, dest: str | Path, limits: FrameZipLimits = FrameZipLimits()) -> int:
    """A frame folder or a zip of frames into the new folder ``dest``; returns the frame count."""
    src = Path(src)
    if src.is_dir():
        return copy_frame_folder(src, dest)
    if src.suffix.lower() in FRAME_ARCHIVE_SUFFIXES:
        return extract_frames_zip(src, dest, limits)
    raise FrameZipError(f"{src} is neither a folder of frames nor a .zip of them")
