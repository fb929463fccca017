"""The graph file format: round trip, and one clear error for each kind of bad file."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from spikeforge.models import FileFormatError, GraphError, load_graph, run_snn, save_graph
from spikeforge.models.npzio import read_npz, write_npz


def test_round_trip_is_identical(tiny_graph, tmp_path, digits):
    path = tmp_path / "g.npz"
    save_graph(tiny_graph, path)
    back = load_graph(path)
    assert [p.name for p in back.populations] == [p.name for p in tiny_graph.populations]
    assert back.schedule() == tiny_graph.schedule()
    for a, b in zip(tiny_graph.populations + tiny_graph.projections, back.populations + back.projections):
        assert type(a) is type(b)
        for key, value in vars(a).items():
            other = getattr(b, key)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, other)
            else:
                assert value == other, key
    x = digits.x_test[:4]
    np.testing.assert_array_equal(run_snn(back, x).logits, run_snn(tiny_graph, x).logits)


def test_truncated_file(tiny_graph, tmp_path):
    path = tmp_path / "g.npz"
    save_graph(tiny_graph, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="corrupt or truncated|not an .npz"):
        load_graph(path)


def test_corrupt_bytes(tiny_graph, tmp_path):
    path = tmp_path / "g.npz"
    save_graph(tiny_graph, path)
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError):
        load_graph(path)


def test_not_a_graph(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(FileFormatError, match="not an .npz"):
        load_graph(path)
    write_npz(tmp_path / "other.npz", {"format": "something-else"}, {"a": np.zeros(2)})
    with pytest.raises(FileFormatError, match="expected a 'spikeforge-snn-graph' file"):
        load_graph(tmp_path / "other.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="no such file"):
        load_graph(tmp_path / "nope.npz")


def _rewrite_header(src, dst, change):
    header, arrays = read_npz(src)
    change(header, arrays)
    write_npz(dst, header, arrays)


def test_wrong_version(tiny_graph, tmp_path):
    save_graph(tiny_graph, tmp_path / "g.npz")
    _rewrite_header(tmp_path / "g.npz", tmp_path / "v2.npz", lambda h, a: h.update(version=99))
    with pytest.raises(FileFormatError, match="version 99 is not supported"):
        load_graph(tmp_path / "v2.npz")


def test_mismatched_shapes(tiny_graph, tmp_path):
    save_graph(tiny_graph, tmp_path / "g.npz")

    def shrink(header, arrays):
        key = next(k for k in arrays if k.endswith(".kernel") and arrays[k].shape[1] > 1)
        arrays[key] = arrays[key][:, :1]

    _rewrite_header(tmp_path / "g.npz", tmp_path / "bad.npz", shrink)
    with pytest.raises(GraphError, match="input channels"):
        load_graph(tmp_path / "bad.npz")


def test_weights_wider_than_declared(tiny_graph, tmp_path):
    save_graph(tiny_graph, tmp_path / "g.npz")
    _rewrite_header(tmp_path / "g.npz", tmp_path / "bad.npz", lambda h, a: h.update(weight_bits=4))
    with pytest.raises(GraphError, match="do not fit in 4 signed bits"):
        load_graph(tmp_path / "bad.npz")


def test_misaligned_delays(tiny_graph, tmp_path):
    save_graph(tiny_graph, tmp_path / "g.npz")

    def drop_delay(header, arrays):
        proj = next(p for p in header["projections"] if p["kind"] == "identity")
        proj["delay"] = 0

    _rewrite_header(tmp_path / "g.npz", tmp_path / "bad.npz", drop_delay)
    with pytest.raises(GraphError, match="arrive in different windows"):
        load_graph(tmp_path / "bad.npz")


def test_unknown_kind_and_missing_field(tiny_graph, tmp_path):
    save_graph(tiny_graph, tmp_path / "g.npz")
    _rewrite_header(tmp_path / "g.npz", tmp_path / "k.npz", lambda h, a: h["populations"][1].update(kind="lif"))
    with pytest.raises(FileFormatError, match="unknown kind 'lif'"):
        load_graph(tmp_path / "k.npz")
    _rewrite_header(tmp_path / "g.npz", tmp_path / "m.npz", lambda h, a: a.pop("pop.1.threshold"))
    with pytest.raises(FileFormatError, match="lacks field 'threshold'"):
        load_graph(tmp_path / "m.npz")


def test_timesteps_below_one(tiny_graph, tmp_path):
    save_graph(tiny_graph, tmp_path / "g.npz")
    _rewrite_header(tmp_path / "g.npz", tmp_path / "t.npz", lambda h, a: h.update(timesteps=0))
    with pytest.raises(GraphError, match="timesteps must be >= 1"):
        load_graph(tmp_path / "t.npz")


def test_huge_declared_array_is_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        hdr = {"descr": "<i8", "fortran_order": False, "shape": (1 << 40,)}
        with zf.open("a.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, hdr)  # header only: 8 TiB declared, 0 stored
        zf.writestr("__header__.npy", b"")
    with pytest.raises(FileFormatError, match="over the .*byte limit|corrupt header"):
        read_npz(path)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(FileFormatError, match="Python objects"):
        read_npz(path)


def test_header_is_json(tiny_graph, tmp_path):
    save_graph(tiny_graph, tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz", allow_pickle=False) as f:
        header = json.loads(f["__header__"].tobytes())
    assert header["format"] == "spikeforge-snn-graph" and header["version"] == 1
