"""Image data sets: IDX, folders, .npz, bundled digits, and every bad input named clearly."""
import gzip

import numpy as np
import pytest
from PIL import Image

from genforge.data import images


def write_idx(path, array, gz=True):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "mnistlike"
    d.mkdir()
    write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (30, 28, 28)))
    write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(30) % 10)
    write_idx(d / "t10k-images-idx3-ubyte", rng.integers(0, 255, (12, 28, 28)), gz=False)
    write_idx(d / "t10k-labels-idx1-ubyte", np.arange(12) % 10, gz=False)
    return d


def test_idx_folder_has_its_own_test_split(idx_dir):
    train = images.load(str(idx_dir), 28, 1, "train")
    test = images.load(str(idx_dir), 28, 1, "test")
    assert train.images.shape == (30, 28, 28, 1) and test.images.shape == (12, 28, 28, 1)
    assert train.labels.tolist() == [i % 10 for i in range(30)] and train.num_classes == 10
    assert images.load(str(idx_dir), 32, 3).images.shape == (30, 32, 32, 3)  # resized, RGB


def test_truncated_idx_names_the_file(idx_dir):
    f = idx_dir / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: truncated"):
        images.load(str(idx_dir), 28, 1, "test")


def test_idx_label_count_mismatch_names_both_files(idx_dir):
    write_idx(idx_dir / "train-labels-idx1-ubyte.gz", np.arange(29) % 10)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz has 29 labels but .*train-images-idx3-ubyte.gz has 30"):
        images.load(str(idx_dir), 28, 1)


def test_npz_images_and_labels(tmp_path):
    p = tmp_path / "faces.npz"
    np.savez(p, images=np.full((20, 64, 64), 7, np.uint8), target=np.arange(20) // 2)
    train = images.load(str(p), 32, 1, "train", test_fraction=0.2, seed=3)
    test = images.load(str(p), 32, 1, "test", test_fraction=0.2, seed=3)
    assert train.images.shape == (16, 32, 32, 1) and len(test) == 4 and train.num_classes == 10
    assert (train.images == 7).all()
    whole = images.load_npz(p)
    # the seeded split is a partition of the source
    joined = sorted(map(tuple, np.concatenate([train.labels, test.labels])[:, None].tolist()))
    assert joined == sorted(map(tuple, whole.labels[:, None].tolist()))


def test_npz_floats_and_channels_first(tmp_path):
    p = tmp_path / "f.npz"
    np.savez(p, x=np.ones((5, 3, 8, 8), np.float32) * 0.5)
    data = images.load_npz(p)
    assert data.images.shape == (5, 8, 8, 3) and data.images.dtype == np.uint8 and data.labels is None
    assert int(data.images[0, 0, 0, 0]) == 128


@pytest.mark.parametrize("arrays,msg", [
    ({"pixels": np.zeros((3, 8, 8))}, "no images array"),
    ({"images": np.zeros((3, 8, 8), np.uint8), "labels": np.zeros(4)}, r"bad.npz:labels has 4 labels but .*bad.npz:images has 3"),
    ({"images": np.full((3, 8, 8), np.nan)}, "NaN or inf"),
    ({"images": np.full((3, 8, 8), 300.0)}, r"span \[300.0, 300.0\]"),
])
def test_bad_npz(tmp_path, arrays, msg):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=msg):
        images.load(str(p), 8, 1)


def save(path, size=(20, 20), mode="L", color=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_labels_from_subfolders(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(3):
            save(tmp_path / "d" / cls / f"{i}.png")
    data = images.load_folder(tmp_path / "d", 16, 3)
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images.shape == (6, 16, 16, 3)


def test_mixed_sizes_and_modes_are_converted_and_said_once(tmp_path):
    save(tmp_path / "d" / "a.png", (20, 20), "L")
    save(tmp_path / "d" / "b.jpg", (40, 30), "RGB", (255, 0, 0))
    save(tmp_path / "d" / "c.png", (50, 50), "RGBA", (0, 0, 255, 255))
    with pytest.warns(UserWarning, match="mixed sizes") as record:
        data = images.load_folder(tmp_path / "d", 28, 1)
    assert len([w for w in record if "mixed" in str(w.message)]) == 1
    assert data.images.shape == (3, 28, 28, 1) and data.labels is None


def test_corrupt_images_skipped_then_an_error_past_the_threshold(tmp_path):
    for i in range(10):
        save(tmp_path / "d" / f"{i}.png")
    (tmp_path / "d" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(UserWarning, match="skipped 1 corrupt"):
        data = images.load_folder(tmp_path / "d", 20, 1, max_bad=0.2)
    assert len(data) == 10
    good = (tmp_path / "d" / "0.png").read_bytes()
    (tmp_path / "d" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"2 of 12 images are corrupt.*broken.png.*truncated.png"):
        images.load_folder(tmp_path / "d", 20, 1, max_bad=0.1)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty: no images found"):
        images.load(str(tmp_path / "empty"), 28, 1)
    with pytest.raises(FileNotFoundError, match="not found: /no/such"):
        images.load("/no/such", 28, 1)


def test_images_both_at_top_level_and_in_classes(tmp_path):
    save(tmp_path / "d" / "top.png")
    save(tmp_path / "d" / "cls" / "a.png")
    with pytest.raises(ValueError, match="both at the top level and in sub-folders"):
        images.load_folder(tmp_path / "d", 20, 1)


def test_bundled_digits_are_the_default():
    train = images.load("", 28, 1, "train")
    test = images.load("", 28, 1, "test")
    assert len(train) + len(test) == 1797 and len(test) == 180
    assert train.images.shape[1:] == (28, 28, 1) and train.images.max() > 200 and train.num_classes == 10


def test_real_mnist(datasets):
    train = images.load(str(datasets / "mnist"), 28, 1, "train")
    test = images.load(str(datasets / "mnist"), 28, 1, "test")
    assert train.images.shape == (60000, 28, 28, 1) and len(test) == 10000
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
