"""The first run's plain parts (no bpy): where a new result goes and how a view frames it, job
names from the server's list, errors as one line, the models' words in the preferences."""

import time

import numpy as np
import pytest

from blender_addon.format.messages import has_details, headline
from blender_addon.format.placement import bounds, framing, overlaps, place_beside
from blender_addon.link.job_list import JobEntry, entries, input_name, job_title
from blender_addon.link.models import ModelRow, format_bytes

CUBE = (np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0]))  # Blender's default cube


def test_a_result_inside_the_default_cube_moves_beside_it():
    result = (np.array([-0.4, -0.3, -0.5]), np.array([0.4, 0.3, 0.5]))
    offset = place_beside(result, [CUBE])
    assert offset[1] == offset[2] == 0.0 and offset[0] == pytest.approx(1.0 + 0.25 + 0.4)
    assert not overlaps((result[0] + offset, result[1] + offset), CUBE)
    # Clear already: it stays. Two things in a row: it passes both.
    assert np.all(place_beside(result, [(CUBE[0] + [5, 0, 0], CUBE[1] + [5, 0, 0])]) == 0)
    row = [CUBE, (np.array([1.2, -1, -1]), np.array([3.0, 1, 1]))]
    offset = place_beside(result, row)
    assert offset[0] == pytest.approx(3.0 + 0.25 + 0.4) and not any(overlaps((result[0] + offset, result[1] + offset), b) for b in row)


def test_bounds_ignore_stray_points_and_framing_shows_the_box():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-0.5, 0.5, (2000, 3)), [[40.0, 0, 0]]])  # one stray Gaussian far away
    lo, hi = bounds(points)
    assert np.all(hi < 1.0) and np.all(lo > -1.0)
    centre, distance = framing((np.array([2.0, 0, 0]), np.array([4.0, 2, 2])))
    assert np.allclose(centre, [3, 1, 1])
    radius = np.sqrt(3.0)
    assert distance * np.sin(np.radians(39.6 / 2)) > radius  # the sphere around the box fits in the view
    assert framing((np.zeros(3), np.zeros(3)))[1] > 0  # a point still gets a distance


def status(**kw):
    base = {"id": "26b85edd1df74c3f8e0f2a7c9b1d4e55", "kind": "generate", "state": "done",
            "created_at": time.mktime((2025, 6, 3, 14, 5, 0, 0, 0, -1)), "inputs": {"image": {"filename": "my cat.png"}}}
    return {**base, **kw}


def test_jobs_are_named_by_their_input_and_date():
    assert input_name(status()) == "my cat"
    assert input_name(status(kind="animate", inputs={"ply": {"filename": "C:\\scans\\lamp.ply"}, "video": {"filename": "x.mp4"}})) == "lamp"
    assert input_name(status(kind="demo", inputs={})) == "demo"
    assert job_title(status()) == "my cat 2025-06-03 14:05"
    assert JobEntry.from_status(status()).label == "Generate · my cat · done · 3 Jun 14:05"
    assert JobEntry.from_status(status(kind="demo", inputs={}, state="running")).label == "Demo · running · 3 Jun 14:05"
    newest = entries([status(id="a", created_at=1.0), status(id="b", created_at=2.0), {"state": "no id"}])
    assert [e.id for e in newest] == ["b", "a"]


@pytest.mark.parametrize("text, line", [
    ("POST /jobs: 422 settings: iterations must be at most 5000", "settings: iterations must be at most 5000"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
     "dynapose4d.weights.registry.ModelNotFoundError: model 'svd' is not available on this machine.",
     "model 'svd' is not available on this machine."),
    ("cannot reach the DynaPose4D backend at http://127.0.0.1:8765 (Connection refused). Start it\nmore",
     "cannot reach the DynaPose4D backend at http://127.0.0.1:8765 (Connection refused). Start it"),
    ("", ""),
])
def test_an_error_reads_as_one_line(text, line):
    assert headline(text) == line
    assert has_details(text) == (text.strip() != line)


def test_a_long_line_is_cut():
    assert len(headline("x" * 500)) == 160 and headline("x" * 500).endswith("…")


def model(**kw):
    base = dict(name="svd", title="Stable Video Diffusion img2vid (14 frames)", kind="svd", gated=True,
                download_bytes=4_500_000_000, used_by="Generate without a video of yours", unknown_field=1)
    return ModelRow.from_json({**base, **kw})


def test_model_rows_say_their_state_and_progress():
    assert model().status_text() == "missing · about 4.5 GB to download"
    assert model(state="present", bytes_on_disk=4_512_000_000).status_text() == "present · 4.5 GB on disk"
    assert model(state="partial", bytes_on_disk=1_200_000_000, download_bytes_exact=True).status_text() == \
        "partial · 1.2 GB of 4.5 GB on disk"
    assert model(downloadable=False).status_text() == "missing · fetched by hand"
    assert model().progress() is None and not model().downloading
    running = model(download={"state": "downloading", "done_bytes": 1_000_000_000, "total_bytes": 4_000_000_000,
                              "speed": 25_000_000, "eta_s": 120})
    assert running.downloading and running.progress() == (0.25, "1.0 GB of 4.0 GB · 25.0 MB/s · 2:00 left")
    assert model(download={"state": "checking", "done_bytes": 0}).progress() == (0.0, "checking the files on the hub...")
    failed = model(download={"state": "failed", "error": "svd is gated and no Hugging Face token was given"})
    assert failed.failure.startswith("svd is gated") and not failed.downloading
    assert (format_bytes(999), format_bytes(1500), format_bytes(None)) == ("999 B", "1.5 kB", "?")
