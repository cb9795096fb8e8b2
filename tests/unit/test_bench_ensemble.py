"""bench/ensemble.py's test-time views: the mirror and edge-padded shifts of each face."""

from __future__ import annotations

import numpy as np

from _bench import load_bench


def test_views_are_the_face_its_mirror_and_their_edge_padded_shifts() -> None:
    views = load_bench("ensemble").views
    faces = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1)
    out = views(faces, 2)
    assert len(out) == 10 and all(v.shape == faces.shape for v in out.values())
    np.testing.assert_array_equal(out["mirror"], faces[:, :, ::-1])
    # shifted down by 2: the first two rows repeat the top edge, the rest is the face moved
    down = out["face+(-2,0)"]
    np.testing.assert_array_equal(down[:, 2:], faces[:, :-2])
    np.testing.assert_array_equal(down[:, 0], faces[:, 0])
    right = out["mirror+(0,2)"]
    np.testing.assert_array_equal(right[:, :, :-2], faces[:, :, ::-1][:, :, 2:])
    assert set(views(faces, 0)) == {"face", "mirror"}
