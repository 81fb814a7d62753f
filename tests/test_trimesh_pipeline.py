"""trimesh_decode.pipeline: Grain batches of previews, with worker processes, resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_worker_processes_give_the_same_batches_and_resume_from_a_saved_state(tiny_dataset):
    """data.workers spreads batches over processes (for an accelerator): the stream is the same as
    in-process loading, and its state restores into a fresh pipeline where it stopped."""
    from trimesh_decode.pipeline import preview_batches

    kw = dict(batch_size=2, seed=3, pad_points=320, pad_triangles=640)
    plain = iter(preview_batches(str(tiny_dataset), **kw))
    expected = [next(plain) for _ in range(6)]
    it = iter(preview_batches(str(tiny_dataset), workers=2, **kw))
    got = [next(it) for _ in range(3)]
    state = it.get_state()
    resumed = iter(preview_batches(str(tiny_dataset), workers=2, **kw))
    resumed.set_state(state)
    got += [next(resumed) for _ in range(3)]
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
