"""Videos as users have them: frame folders and zips of frames through the CLI (real
subprocesses), hostile zips refused by name, the frame rate of folders, and the timing that
reaches the sequence sidecar (real fps and duration of the resampled clip)."""

import io
import json
import stat
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dynapose4d.cameras import Cameras
from dynapose4d.evaluation.articulated import make_articulated
from dynapose4d.video.frame_folder import FrameZipError, FrameZipLimits, extract_frames_zip, import_frames
from dynapose4d.io import write_ply
from dynapose4d.render import render
from dynapose4d.video.clip import VideoError, read_frames
from tests.test_cli import result_line, run


def write_frames(folder: Path, count: int = 6, size: int = 96, suffix: str = ".png") -> list[np.ndarray]:
    """The lamp moving, one image per frame, named so that only a natural sort orders them."""
    lamp = make_articulated("lamp", 800)
    with torch.no_grad():
        rgb = render(lamp.gaussians_at(torch.linspace(0, 1, count)), Cameras.orbit(0.0, 0.0, 2.0, width=size), 1.0).rgb.numpy()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(rgb):
        u8 = (f * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"shot{i}{suffix}"), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))  # shot10 after shot9
        out.append(u8)
    return out


def zip_folder(folder: Path, path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, prefix + p.name)
    return path


@pytest.fixture(scope="module")
def lamp_ply(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ply") / "lamp.ply"
    write_ply(path, make_articulated("lamp", 800).static)
    return path


# -- the extractor -------------------------------------------------------------------------------


def test_zip_frames_extract_in_natural_order(tmp_path):
    frames = write_frames(tmp_path / "f", count=11, size=32)
    zip_folder(tmp_path / "f", tmp_path / "f.zip", prefix="clip/")
    with zipfile.ZipFile(tmp_path / "f.zip", "a") as zf:
        zf.writestr("__MACOSX/clip/._shot0.png", b"resource fork")  # archiver clutter: skipped
        zf.writestr("clip/.DS_Store", b"x")
        zf.writestr("clip/", b"")  # a folder entry
    assert extract_frames_zip(tmp_path / "f.zip", tmp_path / "out") == 11
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"frame_{i:05d}.png" for i in range(11)]
    got = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "frame_00010.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(got, frames[10])  # shot10, not shot1's neighbour in a plain sort


def zip_bytes(members: dict) -> bytes:
    """A zip of ``{name: bytes}``; a ``ZipInfo`` value is written as that entry (e.g. a link)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if isinstance(data, zipfile.ZipInfo):
                zf.writestr(data, b"target.png")
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def _zip(path: Path, members: dict) -> Path:
    path.write_bytes(zip_bytes(members))
    return path


def _png_bytes(side: int = 32) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((side, side, 3), 200, np.uint8))
    return buf.tobytes()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "members, message, too_large",
    [
        ({"../evil.png": _png_bytes()}, "points outside the archive", False),
        ({"a/../../evil.png": _png_bytes()}, "points outside the archive", False),
        ({"/etc/evil.png": _png_bytes()}, "has an absolute path", False),
        ({"C:/evil.png": _png_bytes()}, "has an absolute path", False),
        ({"link.png": _symlink("link.png")}, "is a symbolic link", False),
        ({"a.png": _png_bytes(), "run.sh": b"#!/bin/sh\n"}, "'run.sh' is not an image", False),
        ({"bomb.bmp": b"\0" * (8 * 1024 * 1024)}, "a zip bomb is refused", True),
        ({f"{i}.png": _png_bytes() for i in range(12)}, "more than the limit of 10 frames", True),
        ({"notes.txt": b"hello"}, "'notes.txt' is not an image", False),
        ({"__MACOSX/x": b""}, "holds no image files", False),
    ],
)
def test_hostile_zips_are_refused_by_name_and_leave_nothing(tmp_path, members, message, too_large):
    path = _zip(tmp_path / "bad.zip", members)
    with pytest.raises(FrameZipError, match=message) as err:
        extract_frames_zip(path, tmp_path / "out", FrameZipLimits(max_members=10))
    assert err.value.too_large == too_large
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.png").exists()


def test_zip_sizes_are_counted_not_trusted(tmp_path):
    path = _zip(tmp_path / "big.zip", {f"{i}.png": _png_bytes() for i in range(3)})
    with pytest.raises(FrameZipError, match="expands to more than"):
        extract_frames_zip(path, tmp_path / "out", FrameZipLimits(max_total_bytes=2 * len(_png_bytes())))
    # A member whose header understates its size (a forged directory) is stopped while writing.
    data = bytearray(path.read_bytes())
    real = len(_png_bytes())
    forged = real.to_bytes(4, "little")
    smaller = (real - 10).to_bytes(4, "little")
    data = data.replace(forged, smaller)  # uncompressed size in the local and central headers
    (tmp_path / "forged.zip").write_bytes(bytes(data))
    with pytest.raises(FrameZipError):
        extract_frames_zip(tmp_path / "forged.zip", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    with pytest.raises(FrameZipError, match="not a readable zip"):
        extract_frames_zip(tmp_path / "forged.zip.missing", tmp_path / "out3")


def corrupt_member(data: bytes, name: str, offset: int = 0) -> bytes:
    """``data`` (a zip) with 8 bytes of member ``name``'s compressed data overwritten: at offset 0
    the deflate stream breaks (zlib.error), further on its CRC (BadZipFile)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + offset
    out = bytearray(data)
    out[start : start + 8] = b"\xff" * 8
    return bytes(out)


def _noise_png(side: int = 48, seed: int = 0, mode: str = "RGB", alpha: int | None = None) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, (side, side, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    if alpha is not None:
        arr[..., 3] = alpha
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("offset, error", [(0, "zlib: Error -3"), (10, "BadZipFile: Bad CRC-32")])
def test_a_member_that_cannot_be_read_is_named_and_nothing_stays(tmp_path, offset, error):
    """Issue 27, finding 3: corrupt compressed data raised zlib.error through (a bare 500, a
    traceback in the CLI)."""
    data = zip_bytes({f"f{i}.png": _noise_png(seed=i) for i in range(4)})
    path = tmp_path / "bad.zip"
    path.write_bytes(corrupt_member(data, "f2.png", offset))
    with pytest.raises(FrameZipError, match="member 'f2.png' cannot be read") as err:
        extract_frames_zip(path, tmp_path / "out")
    assert not err.value.too_large and error in str(err.value)
    assert not (tmp_path / "out").exists()  # frames 0 and 1 were written, then removed


def test_small_members_cannot_add_up_to_a_bomb(tmp_path, monkeypatch):
    """Issue 27, finding 6: members of 1 MiB or less skipped the expansion check, so a 2.2 MiB
    zip of flat BMPs unpacked to 2 GB. The whole zip is bounded against its size, and against
    the free disk, before a byte is written."""
    path = _zip(tmp_path / "flat.zip", {f"{i:03d}.bmp": b"\0" * (1 << 20) for i in range(40)})  # 40 MiB from ~40 kB
    with pytest.raises(FrameZipError, match="a zip bomb is refused") as err:
        extract_frames_zip(path, tmp_path / "out")
    assert err.value.too_large and "expands to 40.0 MiB" in str(err.value)
    assert not (tmp_path / "out").exists()
    # The free disk: frames that would not leave the reserve free are refused (507 on a server).
    import shutil

    frames = _zip(tmp_path / "ok.zip", {f"{i}.png": _noise_png(seed=i) for i in range(3)})
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(FrameZipError, match="not enough disk space to unpack ok.zip") as err:
        extract_frames_zip(frames, tmp_path / "out")
    assert err.value.no_space and not (tmp_path / "out").exists()


BAD_FRAMES = [
    ("1x1 frame", {"f0.png": _noise_png(), "f1.png": _noise_png(1)}, "member 'f1.png' is only 1x1 pixels"),
    ("transparent frame", {"f0.png": _noise_png(), "f1.png": _noise_png(mode="RGBA", alpha=0)}, "member 'f1.png' is fully transparent"),
    ("garbage frame 5", {**{f"f{i}.png": _noise_png(seed=i) for i in range(5)}, "f5.png": b"\x89PNG garbage"}, "member 'f5.png' is not an image"),
    ("truncated frame", {"f0.png": _noise_png(), "f1.png": _noise_png(seed=1)[:200]}, "member 'f1.png' is damaged or truncated"),
]


@pytest.mark.parametrize("members, message", [c[1:] for c in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES])
def test_every_frame_is_checked_as_an_image_by_its_member_name(tmp_path, members, message):
    """Issue 27, finding 8: such frames got 201 (the job failed later, naming a renamed file in
    a server path), and the CLI read only the frames it sampled. Now the zip's every frame is
    checked, here for the CLI (import_frames) and the server alike."""
    path = _zip(tmp_path / "frames.zip", members)
    with pytest.raises(FrameZipError, match=message):
        import_frames(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, data in members.items():
        (folder / name).write_bytes(data)
    with pytest.raises(FrameZipError, match=message.split("'")[-1].strip()):
        import_frames(folder, tmp_path / "out2")  # a folder of the same frames, named by file


def test_the_cli_refuses_a_zip_with_a_garbage_frame_it_would_not_sample(tmp_path, lamp_ply):
    write_frames(tmp_path / "f", count=6, size=64)
    (tmp_path / "f" / "shot5.png").write_bytes(b"\x89PNG garbage")
    zip_folder(tmp_path / "f", tmp_path / "frames.zip")
    proc = run("animate", str(lamp_ply), "--video", str(tmp_path / "frames.zip"), "--frames", "3", "-o", str(tmp_path / "job"))
    assert proc.returncode == 1 and "member 'shot5.png' is not an image" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # A corrupt member is the same: named, no traceback (it was zlib.error's).
    data = zip_bytes({f"f{i}.png": _noise_png(seed=i) for i in range(3)})
    (tmp_path / "bad.zip").write_bytes(corrupt_member(data, "f1.png"))
    proc = run("animate", str(lamp_ply), "--video", str(tmp_path / "bad.zip"), "-o", str(tmp_path / "job2"))
    assert proc.returncode == 1 and "member 'f1.png' cannot be read" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_folder_copies_its_frames_only(tmp_path):
    write_frames(tmp_path / "f", count=3, size=32)
    (tmp_path / "f" / "notes.txt").write_text("not a frame")
    (tmp_path / "f" / "sub").mkdir()
    assert import_frames(tmp_path / "f", tmp_path / "out") == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shot0.png", "shot1.png", "shot2.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameZipError, match="holds no image files"):
        import_frames(tmp_path / "empty", tmp_path / "out2")


# -- timing and the reader -----------------------------------------------------------------------


def test_frame_folder_fps_sets_the_real_rate_of_the_resampled_clip(tmp_path):
    write_frames(tmp_path / "f", count=11, size=32)
    _, _, fps, info = read_frames(tmp_path / "f", num_frames=6, fps=20.0)
    # 11 frames at 20 fps last 0.5 s; 6 frames over 0.5 s are 10 fps.
    assert fps == pytest.approx(10.0) and info["source_fps"] == 20.0 and not info["fps_assumed"]
    assert info["indices"] == [0, 2, 4, 6, 8, 10]
    _, _, fps, info = read_frames(tmp_path / "f", num_frames=6)
    assert info["fps_assumed"] and fps == pytest.approx(5 / (10 / 7.0))


def test_unreadable_video_names_what_works(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"not a video at all")
    with pytest.raises(VideoError) as err:
        read_frames(tmp_path / "clip.mp4", num_frames=4)
    text = str(err.value)
    assert ".mp4" in text and ".webm" in text and "folder" in text and ".zip" in text and "--fps" in text


# -- the CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_zip", [False, True])
def test_cli_animates_a_frame_folder_or_zip_at_its_fps(tmp_path, lamp_ply, as_zip):
    write_frames(tmp_path / "frames", count=7, size=96)
    video = zip_folder(tmp_path / "frames", tmp_path / "frames.zip") if as_zip else tmp_path / "frames"
    job = tmp_path / "job"
    args = ["animate", str(lamp_ply), "--video", str(video), "--fps", "12", "-o", str(job),
            "--iterations", "2", "--frames", "4", "--no-previews"]
    out = run(*args)
    assert out.returncode == 0, out.stderr
    assert result_line(out.stdout)["status"] == "finished"
    spec = json.loads((job / "job.json").read_text())
    assert spec["inputs"]["video"] == "video_frames" and spec["settings"]["video_fps"] == 12.0
    assert len(list((job / "inputs" / "video_frames").iterdir())) == 7
    # Timing: 7 frames at 12 fps last 0.5 s; the 4 frames used are 6 fps, and the sidecar says so.
    video_info = json.loads((job / "video" / "video.json").read_text())
    assert video_info["fps"] == pytest.approx(6.0) and video_info["meta"]["source_fps"] == 12.0
    assert video_info["duration_s"] == pytest.approx(0.5) and video_info["meta"]["indices"] == [0, 2, 4, 6]
    sidecar = json.loads((job / "sequence" / "sequence.json").read_text())
    assert sidecar["source"]["video_fps"] == pytest.approx(6.0) and sidecar["source"]["video_frames"] == 4
    assert sidecar["source"]["duration_s"] == pytest.approx(0.5)
    assert sidecar["fps"] == pytest.approx(6.0) and sidecar["frame_count"] == 4


def test_cli_refuses_a_hostile_zip_and_an_empty_folder_without_a_traceback(tmp_path, lamp_ply):
    _zip(tmp_path / "bad.zip", {"../../evil.png": _png_bytes()})
    out = run("animate", str(lamp_ply), "--video", str(tmp_path / "bad.zip"), "-o", str(tmp_path / "job"))
    assert out.returncode == 1 and "points outside the archive" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "empty").mkdir()
    out = run("animate", str(lamp_ply), "--video", str(tmp_path / "empty"), "-o", str(tmp_path / "job2"))
    assert out.returncode == 1 and "holds no image files" in out.stderr and "Traceback" not in out.stderr
