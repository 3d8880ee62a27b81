"""The mesh endpoint on the real server, fetched by the add-on's own client: a demo job's snapshot
as a skinned mesh sampled at the client's frame rate, the bad requests it refuses."""

import numpy as np
import pytest

pytest.register_assert_rewrite("tests.server_fixtures")
from blender_addon.link.client import BackendClient, BackendError  # noqa: E402
from blender_addon.format.sequence import Sampling  # noqa: E402
from tests.server_fixtures import finished_demo  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]
MESH = {"max_bones": 6, "target_faces": 1500, "resolution": 40}


@pytest.fixture(scope="module")
def done_job(job_server):
    return finished_demo(job_server, gaussians=1500)


def test_the_client_fetches_points_and_the_skinned_mesh_of_one_snapshot(job_server, done_job):
    client = BackendClient(job_server.url, job_server.token)
    sampling = Sampling(12.0, 5)
    seq = client.sequence(done_job, sampling, mesh=MESH)
    sk = seq.skinned
    assert sk.frame_count == 5 and sk.fps == 12.0 and 1 <= sk.num_bones <= 6
    assert sk.report["faces"] == len(sk.faces) <= 1500 and sk.report["snapshot"]["version"] == seq.version
    np.testing.assert_allclose(sk.weights.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(sk.deformed[0], sk.vertices, atol=1e-5)
    # The mesh is on the Gaussians (frame 0 and later): vertices near the streamed points.
    for k in (0, 4):
        d = np.linalg.norm(sk.deformed[k][:, None] - seq.positions[k][None, ::3], axis=-1).min(1)
        assert np.median(d) < 0.05, k
    # Repeated requests are served from the cache, byte for byte.
    again = client.mesh(done_job, sampling, seq.version, **MESH)
    np.testing.assert_array_equal(again.vertices, sk.vertices)


def test_bad_mesh_requests(job_server, done_job):
    client = BackendClient(job_server.url, job_server.token)
    with pytest.raises(BackendError) as info:
        client.mesh(done_job, Sampling(12.0, 5), max_bones=0)
    assert info.value.status == 422 and "max_bones" in str(info.value)
    with pytest.raises(BackendError) as info:
        client.mesh("no-such-job", Sampling(12.0, 5))
    assert info.value.status == 404
    with pytest.raises(BackendError) as info:
        client.mesh(done_job, Sampling(12.0, 5), version=9999)
    assert info.value.status == 409
