"""Frame folders: a user's folder of frames, or a zip of one, turned into the job's frame folder.

A zip comes from a stranger (an upload) as often as from the user, so it is read as hostile:
every member is checked before a byte is written, and the bytes written are counted again while
they are written (the sizes in a zip's directory are claims, not facts).

Refused, each with a message naming the member and the limit:

- names that are absolute, carry a drive letter, or climb out with ``..`` (path traversal);
- symbolic links (Unix mode in the member's external attributes) and encrypted members;
- more than ``max_members`` frames (``max_entries`` entries of any kind), more than
  ``max_total_bytes`` uncompressed, a member whose uncompressed size is more than ``max_ratio``
  times its compressed size, or a whole zip that is (zip bombs); more than the free disk space;
- members that are not images (by suffix), except the clutter archivers add
  (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``), which is skipped;
- a member that cannot be read (corrupt compressed data, a wrong CRC), or that is not a usable
  image once written (``images.check_image``: unreadable, too small or large, fully
  transparent), or frames of different sizes. What was written is removed.

Members are never extracted under their own names: image ``i`` (in the natural order of the
member paths, so ``f2.png`` comes before ``f10.png``) becomes ``frame_<i>.<suffix>`` in the
destination, which the video reader then reads as a frame folder.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..formats import FRAME_ARCHIVE_SUFFIXES, IMAGE_SUFFIXES
from ..imaging.images import MAX_PIXELS

__all__ = ["FrameZipError", "FrameZipLimits", "extract_frames_zip", "copy_frame_folder", "frame_files", "import_frames"]

_CLUTTER = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)


class FrameZipError(ValueError):
    """A frame folder or zip that cannot be used. ``too_large``: a size or count limit was hit
    (a server answers 413); ``no_space``: the disk cannot hold the frames (507); otherwise the
    content is wrong (422)."""

    def __init__(self, message: str, *, too_large: bool = False, no_space: bool = False):
        super().__init__(message)
        self.too_large = too_large
        self.no_space = no_space


@dataclass(frozen=True)
class FrameZipLimits:
    """Limits on a zip of frames (defaults: 2,000 frames, 2 GiB of pixels, ratio 200).

    PNG and JPEG frames barely compress (ratio near 1); a flat uncompressed BMP or TIFF can
    reach 100+. Deflate cannot exceed about 1030, so a ratio above ``max_ratio`` on a large
    member is a bomb, not a frame; small members are exempt (a tiny flat image may compress
    well), but the whole zip is not: it may unpack to at most ``max_ratio`` times its size plus
    ``ratio_exempt_bytes`` (2,000 flat 1 MiB BMPs in a 2 MiB zip are a bomb too). Every frame is
    checked as an image (``images.check_image``: at most ``max_pixels``, readable, not fully
    transparent) and all must have one size.
    """

    max_members: int = 2000  # frames
    max_entries: int = 10_000  # entries of any kind: frames, folders, archiver clutter
    max_total_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0
    ratio_exempt_bytes: int = 1024 * 1024
    max_pixels: int = MAX_PIXELS
    reserve_bytes: int = 64 * 1024 * 1024  # left free on the disk after unpacking


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


def _check_member(info: zipfile.ZipInfo, zip_name: str, limits: FrameZipLimits) -> bool:
    """Whether ``info`` is a frame (False: a folder or clutter, skipped); raises on anything else."""
    path = _check_name(info.filename, zip_name)
    if _is_symlink(info):
        raise FrameZipError(f"{zip_name}: member {info.filename!r} is a symbolic link; a zip of frames may hold image files only")
    if info.is_dir() or _CLUTTER.search(info.filename):
        return False
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
    return True


def _plan(zf: zipfile.ZipFile, zip_name: str, zip_bytes: int, limits: FrameZipLimits) -> tuple[list[zipfile.ZipInfo], int]:
    """The image members to extract, in frame order, and their total size, after every check
    that needs no byte of them; raises FrameZipError."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise FrameZipError(f"{zip_name} has {len(infos):,} entries (files and folders), more than the limit of {limits.max_entries:,}", too_large=True)
    images = [info for info in infos if _check_member(info, zip_name, limits)]
    if len(images) > limits.max_members:
        raise FrameZipError(f"{zip_name} holds {len(images):,} images, more than the limit of {limits.max_members:,} frames", too_large=True)
    if not images:
        raise FrameZipError(f"{zip_name} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    total = sum(info.file_size for info in images)
    if total > limits.max_total_bytes:
        raise FrameZipError(
            f"{zip_name} expands to more than {limits.max_total_bytes / 2**20:,.0f} MiB; send fewer or smaller frames", too_large=True
        )
    if total > limits.max_ratio * zip_bytes + limits.ratio_exempt_bytes:
        raise FrameZipError(
            f"{zip_name} expands to {total / 2**20:,.1f} MiB from {zip_bytes / 2**20:,.1f} MiB ({total / max(1, zip_bytes):,.0f} times; "
            f"the limit for a whole zip is {limits.max_ratio:g} times plus {limits.ratio_exempt_bytes / 2**20:g} MiB); a zip bomb is refused",
            too_large=True,
        )
    return sorted(images, key=lambda info: _natural_key(info.filename)), total


def _check_space(folder: Path, need: int, what: str, limits: FrameZipLimits) -> None:
    free = shutil.disk_usage(folder).free
    if need + limits.reserve_bytes > free:
        raise FrameZipError(
            f"not enough disk space to unpack {what}: its frames take {need / 2**20:,.1f} MiB and {free / 2**20:,.0f} MiB are free "
            f"({limits.reserve_bytes / 2**20:g} MiB must stay free); free some space or send fewer frames", no_space=True
        )


def _unpack(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, zip_name: str, budget: int) -> int:
    """Write one member; returns its byte count. A member that cannot be read (corrupt data, a
    wrong CRC, an unknown compression) is a FrameZipError naming it; a failed write (a full
    disk) is raised as it is."""
    member = f"{zip_name}: member {info.filename!r}"
    size = 0
    with open(target, "wb") as out:
        try:
            src = zf.open(info)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, ValueError, RuntimeError) as exc:
            raise FrameZipError(f"{member} cannot be read ({_why(exc)}); zip the frames again") from None
        with src:
            while True:
                try:
                    chunk = src.read(1 << 20)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError) as exc:
                    raise FrameZipError(f"{member} cannot be read: its data is damaged ({_why(exc)}); zip the frames again") from None
                if not chunk:
                    return size
                size += len(chunk)
                # The directory's sizes are claims: the bytes themselves are counted too.
                if size > info.file_size or size > budget:
                    raise FrameZipError(f"{member} holds more bytes than its header says; refused", too_large=True)
                out.write(chunk)


def _why(exc: BaseException) -> str:
    name = "zlib" if isinstance(exc, zlib.error) else type(exc).__name__
    text = str(exc) if not isinstance(exc, OSError) else ""  # an OSError may name our path
    return f"{name}: {text}" if text else name


def extract_frames_zip(zip_path: str | Path, dest: str | Path, limits: FrameZipLimits = FrameZipLimits(), *, name: str | None = None) -> int:
    """Check ``zip_path`` and write its images into the new folder ``dest`` as ``frame_<i>``
    files, each checked as an image as it lands (one size for all); returns the number of
    frames. ``name`` is how messages call the zip (default: its file name). On any refusal,
    and on any other failure, nothing is left in ``dest``."""
    from ..imaging.images import ImageLoadError, check_image

    zip_name = name or Path(zip_path).name
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
        zip_bytes = os.path.getsize(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        why = str(exc) if isinstance(exc, zipfile.BadZipFile) else type(exc).__name__  # an OSError names our path
        raise FrameZipError(f"{zip_name} is not a readable zip file ({why})") from None
    with zf:
        members, total = _plan(zf, zip_name, zip_bytes, limits)
        _check_space(dest.parent, total, zip_name, limits)
        dest.mkdir(parents=True, exist_ok=False)
        try:
            written, sizes = 0, {}
            for i, info in enumerate(members):
                target = dest / f"frame_{i:05d}{PurePosixPath(info.filename).suffix.lower()}"
                written += _unpack(zf, info, target, zip_name, limits.max_total_bytes - written)
                try:
                    sizes.setdefault(check_image(target, f"{zip_name}: member {info.filename!r}", max_pixels=limits.max_pixels), info.filename)
                except ImageLoadError as exc:
                    raise FrameZipError(str(exc)) from None
                _check_one_size(sizes, zip_name)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return len(members)


def _check_one_size(sizes: dict[tuple[int, int], str], what: str) -> None:
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({name!r})" for (w, h), name in list(sizes.items())[:4])
        raise FrameZipError(f"{what}: the frames differ in size ({shown}); export them at one size")


def frame_files(folder: str | Path) -> list[Path]:
    """The frames of a folder in natural order: what ``video.read_frames`` reads, and what the
    CLI and the server copy."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("mask_")]
    return sorted(files, key=lambda p: _natural_key(p.name))


def copy_frame_folder(src: str | Path, dest: str | Path, limits: FrameZipLimits = FrameZipLimits()) -> int:
    """Check every frame of the folder ``src`` as an image, then copy them (not its other files,
    not its subfolders, no links) into the new folder ``dest``; returns the number of frames."""
    src = Path(src)
    files = [p for p in frame_files(src) if not p.is_symlink()]
    if not files:
        raise FrameZipError(f"the folder {src} holds no image files ({', '.join(IMAGE_SUFFIXES)}); give a folder of frames")
    from ..imaging.images import ImageLoadError, check_image

    sizes = {}
    for p in files:  # every frame, as the server checks a zip's (not only those a job samples)
        try:
            sizes.setdefault(check_image(p, f"frame {p.name!r} of {src}", max_pixels=limits.max_pixels), p.name)
        except ImageLoadError as exc:
            raise FrameZipError(str(exc)) from None
        _check_one_size(sizes, f"the folder {src}")
    _check_space(Path(dest).parent, sum(p.stat().st_size for p in files), f"the frames of {src}", limits)
    Path(dest).mkdir(parents=True, exist_ok=False)
    for p in files:
        shutil.copyfile(p, Path(dest) / p.name)
    return len(files)


def import_frames(src: str | Path, dest: str | Path, limits: FrameZipLimits = FrameZipLimits()) -> int:
    """A frame folder or a zip of frames into the new folder ``dest``; returns the frame count."""
    src = Path(src)
    if src.is_dir():
        return copy_frame_folder(src, dest, limits)
    if src.suffix.lower() in FRAME_ARCHIVE_SUFFIXES:
        return extract_frames_zip(src, dest, limits)
    raise FrameZipError(f"{src} is neither a folder of frames nor a .zip of them")
