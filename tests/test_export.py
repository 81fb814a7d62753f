"""compat.export: shipped model files are verified and damaged ones refused with a reason."""

import numpy as np
import pytest

from compat.export import find_model, read_model, write_model


def test_write_then_read_round_trips_and_records_the_sha256(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b/c": np.ones(4, np.float16)}
    path = write_model(tmp_path, "m", arrays, {"step": 7})
    got, meta = read_model(path, require_meta=True)
    assert meta["name"] == "m" and meta["step"] == 7 and len(meta["sha256"]) == 64
    assert set(got) == {"a", "b/c"} and np.array_equal(got["a"], arrays["a"]) and got["b/c"].dtype == np.float16
    assert find_model("m", tmp_path, "test model") == path
    with pytest.raises(FileNotFoundError, match="shipped: m"):
        find_model("other", tmp_path, "test model")


def test_damaged_files_are_refused_with_the_reason(tmp_path):
    path = write_model(tmp_path, "m", {"a": np.zeros(100)}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="sha256"):
        read_model(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match="settings file"):
        read_model(path, require_meta=True)
    with pytest.raises(ValueError, match="cannot read the weights"):
        read_model(path)  # no record to check against: the archive itself is unreadable
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ValueError, match="not a model description"):
        read_model(path)
