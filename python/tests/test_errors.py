"""Every SPEC §6 bad input raises vlad.InputError with the command line's
message, less the file name: each case is also run through `vlad encode`
and the two messages compared."""

import subprocess

import numpy as np
import pytest

import vlad
from conftest import vlad_binary

F = 4
GOOD_C = np.arange(12, dtype=np.float32).reshape(3, F)


def good_rows(n=6):
    return (np.arange(n * F, dtype=np.float32).reshape(n, F) % 7) + 0.5


def nan_at(a, index, value=np.nan):
    a = a.copy()
    a[index] = value
    return a


def cli_message(tmp_path, descriptors, centroids, offsets=None, labels=None):
    """`vlad encode` on the same arrays: its error line, file names removed."""
    files = {"descriptors": tmp_path / "D.npy", "centroids": tmp_path / "C.npy"}
    np.save(files["descriptors"], descriptors)
    np.save(files["centroids"], centroids)
    args = [
        str(vlad_binary()), "encode",
        "--descriptors", str(files["descriptors"]),
        "--centroids", str(files["centroids"]),
        "--out", str(tmp_path / "V.npy"), "--backend", "cpu",
    ]
    for name, value in (("offsets", offsets), ("labels", labels)):
        if value is not None:
            files[name] = tmp_path / f"{name}.npy"
            np.save(files[name], value)
            args += [f"--{name}", str(files[name])]
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, (run.returncode, run.stderr)
    line = run.stderr.strip().splitlines()[-1]
    prefix = "vlad: error: "
    assert line.startswith(prefix), line
    message = line[len(prefix):]
    paths = [str(p) for p in files.values()]
    for a in paths:
        for b in paths:
            message = message.replace(f"{a} and {b}: ", "")
    for p in paths:
        message = message.replace(f"unsupported input {p}: ", "").replace(f"{p}: ", "")
    assert not any(p in message for p in paths), message
    return message


# (name, descriptors, centroids, offsets, labels)
CASES = [
    ("nan in fixed images", nan_at(good_rows(6).reshape(2, 3, F), (1, 2, 3)), GOOD_C, None, None),
    ("inf in ragged rows", nan_at(good_rows(6), (4, 1), np.inf), GOOD_C, np.array([0, 2, 6]), None),
    ("-inf in one image", nan_at(good_rows(6), (0, 0), -np.inf), GOOD_C, None, None),
    ("nan in centroids", good_rows(), nan_at(GOOD_C, (2, 1)), None, None),
    ("f64 overflowing f32", nan_at(good_rows().astype(np.float64), (3, 3), 1e300), GOOD_C, None, None),
    ("dimension mismatch", good_rows(), GOOD_C[:, :3], None, None),
    ("K = 0", good_rows(), np.zeros((0, F), np.float32), None, None),
    ("F = 0 centroids", good_rows(), np.zeros((3, 0), np.float32), None, None),
    ("F = 0 descriptors", np.zeros((5, 0), np.float32), GOOD_C, None, None),
    ("offsets not from 0", good_rows(), GOOD_C, np.array([1, 3, 6]), None),
    ("offsets decreasing", good_rows(), GOOD_C, np.array([0, 4, 2, 6]), None),
    ("offsets short of N", good_rows(), GOOD_C, np.array([0, 2, 5]), None),
    ("offsets past N", good_rows(), GOOD_C, np.array([0, 2, 7]), None),
    ("offsets empty", good_rows(), GOOD_C, np.zeros(0, np.int64), None),
    ("offsets negative", good_rows(), GOOD_C, np.array([0, -1, 6]), None),
    ("label too large", good_rows(), GOOD_C, None, np.array([0, 1, 2, 3, 0, 1])),
    ("label negative", good_rows(), GOOD_C, None, np.array([0, 1, -2, 0, 0, 1], np.int32)),
    ("too few labels", good_rows(), GOOD_C, None, np.array([0, 1, 2, 0, 1])),
    ("1-D descriptors", np.ones(5, np.float32), GOOD_C, None, None),
    ("4-D descriptors", np.ones((2, 2, 2, F), np.float32), GOOD_C, None, None),
    ("1-D centroids", good_rows(), np.ones(F, np.float32), None, None),
    ("int32 descriptors", good_rows().astype(np.int32), GOOD_C, None, None),
    ("int64 centroids", good_rows(), GOOD_C.astype(np.int64), None, None),
    ("2-D offsets", good_rows(), GOOD_C, np.array([[0, 6]]), None),
    ("float offsets", good_rows(), GOOD_C, np.array([0.0, 6.0]), None),
    ("2-D labels", good_rows(), GOOD_C, None, np.zeros((6, 1), np.int64)),
]


def python_message(descriptors, centroids, offsets, labels):
    with pytest.raises(vlad.InputError) as caught:
        enc = vlad.Encoder(centroids, backend="cpu")
        enc.encode(descriptors, offsets=offsets, labels=labels)
    assert isinstance(caught.value, ValueError)
    return str(caught.value)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_input_error_with_the_cli_message(tmp_path, case):
    _, descriptors, centroids, offsets, labels = case
    ours = python_message(descriptors, centroids, offsets, labels)
    theirs = cli_message(tmp_path, descriptors, centroids, offsets, labels)
    # Identical, except that ours may go on to say which astype to use.
    assert ours == theirs or ours.startswith(theirs + ": use "), (ours, theirs)


def test_messages_name_what_and_where():
    """A few messages written out, so a change of wording is seen here."""
    msg = python_message(nan_at(good_rows(6).reshape(2, 3, F), (1, 2, 3)), GOOD_C, None, None)
    assert msg == "descriptors: non-finite value NaN at row 5 (image 1), column 3"
    msg = python_message(good_rows(), GOOD_C, None, np.array([0, 1, 2, 3, 0, 1]))
    assert msg == "label out of range at index 3: 3 is not in [0, 3)"
    msg = python_message(good_rows().astype(np.int16), GOOD_C, None, None)
    assert msg == (
        "descriptors must be float32, float64 or uint8, got dtype int16 ('<i2'): "
        "use descriptors.astype(np.float32)"
    )
    msg = python_message(good_rows(), GOOD_C, np.array([0.0, 6.0]), None)
    assert "use offsets.astype(np.int64)" in msg


def test_usage_errors_of_the_python_api():
    enc = vlad.Encoder(GOOD_C, backend="cpu")
    with pytest.raises(vlad.InputError, match="fixed-size images need no offsets"):
        enc.encode(good_rows().reshape(2, 3, F), offsets=[0, 2])
    with pytest.raises(vlad.InputError, match="not both"):
        enc.encode([good_rows()], offsets=[0, 6])
    with pytest.raises(vlad.InputError, match=r"images\[1\] must be an \(n, F\) array"):
        enc.encode([good_rows(), np.ones(F, np.float32)])
    with pytest.raises(vlad.InputError, match=r"images\[1\] has F = 3 but images\[0\] has F = 4"):
        enc.encode([good_rows(), np.ones((2, 3), np.float32)])
    with pytest.raises(vlad.InputError, match="unknown backend"):
        vlad.Encoder(GOOD_C, backend="tpu")
    with pytest.raises(vlad.InputError):
        vlad.Encoder(GOOD_C, norm="ssr,l3")
    with pytest.raises(vlad.InputError, match="must be a numpy array"):
        enc._native.encode("not an array")
    with pytest.raises(vlad.InputError, match="dimension mismatch"):
        enc.assign(np.ones((3, 5), np.float32))


def test_nothing_is_left_half_done_after_an_error():
    """An error leaves the encoder usable, with the same results."""
    enc = vlad.Encoder(GOOD_C, backend="cpu")
    before = enc.encode(good_rows())
    with pytest.raises(vlad.InputError):
        enc.encode(nan_at(good_rows(), (1, 1)))
    np.testing.assert_array_equal(enc.encode(good_rows()), before)
