"""Captioned image sets: JSONL, CSV and captions.jsonl folders, aligned subsets, and every bad row named."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from genforge.data import images


def write_pngs(folder, n, size=12):
    """n tiny grey PNGs img{i}.png whose pixels all equal 10 * i (so each image says which it is)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size, size), 10 * i, np.uint8)).save(folder / f"img{i}.png")
    return folder


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pixel_ids(data):
    return [int(v) // 10 for v in data.images[:, 0, 0, 0]]


def test_jsonl_with_paths_relative_to_the_file(tmp_path):
    write_pngs(tmp_path / "pics", 4)
    (tmp_path / "meta").mkdir()
    rows = [{"image": f"../pics/img{i}.png", "caption": f"  picture number {i} "} for i in range(4)]
    f = write_jsonl(tmp_path / "meta" / "caps.jsonl", rows)
    data = images.load_captioned(f, 12, 1)
    assert data.images.shape == (4, 12, 12, 1) and data.labels is None and data.num_classes == 0
    assert data.captions == [f"picture number {i}" for i in range(4)]  # stripped
    assert pixel_ids(data) == [0, 1, 2, 3]  # each caption beside its own image
    assert data.source == str(f)


def test_csv_with_configured_field_names_and_labels(tmp_path):
    write_pngs(tmp_path, 6)
    with open(tmp_path / "caps.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "text", "digit"])
        for i in range(6):
            w.writerow([f"img{i}.png", f"a {i}, written by hand", str(i % 3)])
    data = images.load_captioned(tmp_path / "caps.csv", 8, 3, image_field="file", caption_field="text",
                                 label_field="digit")
    assert data.images.shape == (6, 8, 8, 3)  # resized, RGB
    assert data.captions[4] == "a 4, written by hand"
    assert data.labels.tolist() == [0, 1, 2, 0, 1, 2] and data.class_names == ["0", "1", "2"]


def test_named_labels_are_sorted_classes(tmp_path):
    write_pngs(tmp_path, 3)
    rows = [{"image": f"img{i}.png", "caption": "c", "label": name} for i, name in enumerate(["dog", "cat", "dog"])]
    data = images.load_captioned(write_jsonl(tmp_path / "c.jsonl", rows), 12, 1)
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [1, 0, 1]


def test_folder_with_captions_jsonl_through_load_and_its_split(tmp_path):
    d = write_pngs(tmp_path / "set", 10)
    write_jsonl(d / "captions.jsonl", [{"image": f"img{i}.png", "caption": f"cap {i}"} for i in range(10)])
    train = images.load(str(d), 12, 1, "train", test_fraction=0.3, seed=1)
    test = images.load(str(d), 12, 1, "test", test_fraction=0.3, seed=1)
    assert len(train) == 7 and len(test) == 3
    for part in (train, test):  # captions stay aligned with their images through the split
        assert part.captions == [f"cap {i}" for i in pixel_ids(part)]
    assert sorted(pixel_ids(train) + pixel_ids(test)) == list(range(10))
    assert images.is_captioned(d) and not images.is_captioned(tmp_path)


def test_a_folder_without_captions_is_still_an_unlabelled_folder(tmp_path):
    d = write_pngs(tmp_path / "plain", 3)
    data = images.load(str(d), 12, 1, test_fraction=0)
    assert data.captions is None and len(data) == 3


def test_subset_keeps_captions_aligned_for_indices_and_masks():
    data = images.ImageSet(np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1), np.arange(5), [str(i) for i in range(5)],
                           "s", [f"c{i}" for i in range(5)])
    part = data.subset(np.array([4, 1]), "part")
    assert part.captions == ["c4", "c1"] and part.labels.tolist() == [4, 1] and part.images[:, 0, 0, 0].tolist() == [4, 1]
    masked = data.subset(np.array([True, False, True, False, False]), "mask")
    assert masked.captions == ["c0", "c2"] and masked.labels.tolist() == [0, 2]
    with pytest.raises(ValueError, match="s: 2 captions for 5 images"):
        images.ImageSet(data.images, None, [], "s", ["a", "b"])


def test_repeated_images_with_several_captions(tmp_path):
    write_pngs(tmp_path, 2)
    rows = [{"image": "img1.png", "caption": "one"}, {"image": "img1.png", "caption": "the same one"},
            {"image": "img0.png", "caption": "zero"}]
    data = images.load_captioned(write_jsonl(tmp_path / "c.jsonl", rows), 12, 1)
    assert pixel_ids(data) == [1, 1, 0] and data.captions == ["one", "the same one", "zero"]


@pytest.mark.parametrize("lines, msg", [
    (['{"image": "img0.png", "caption": "ok"}', '{"image": "img1.png", "caption": '],
     r"c.jsonl:2: not valid JSON"),
    (['{"image": "img0.png", "caption": "ok"}', '', '{"image": "img1.png"}'],
     r"c.jsonl:3: no 'caption' field \(fields: image\)"),
    (['{"image": "img0.png", "caption": "   "}'], r"c.jsonl:1: empty 'caption'"),
    (['{"image": "img0.png", "caption": 7}'], r"c.jsonl:1: 'caption' must be a string, got int"),
    (['{"caption": "no image"}'], r"c.jsonl:1: no 'image' field"),
    (['{"image": "nope.png", "caption": "x"}'], r"c.jsonl:1: 'image' 'nope.png' not found"),
    (['{"image": "bad.png", "caption": "x"}'], r"c.jsonl:1: 'image' .*bad.png is not a readable image"),
    (['["img0.png", "x"]'], r"c.jsonl:1: expected a JSON object with 'image' and 'caption', got list"),
    (['{"image": "img0.png", "caption": "a", "label": 1}', '{"image": "img1.png", "caption": "b"}'],
     r"c.jsonl:2: no 'label', but other rows have one"),
    (['{"image": "img0.png", "caption": "a", "label": -1}'], r"c.jsonl:1: 'label' must be >= 0"),
    (['{"image": "img0.png", "caption": "a", "label": 1}', '{"image": "img1.png", "caption": "b", "label": "cat"}'],
     r"c.jsonl: labels mix integers and names"),
    ([''], r"c.jsonl: no captioned images"),
])
def test_bad_jsonl_rows_name_file_line_and_field(tmp_path, lines, msg):
    write_pngs(tmp_path, 2)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=msg):
        images.load_captioned(tmp_path / "c.jsonl", 12, 1)


@pytest.mark.parametrize("text, msg", [
    ("path,caption\nimg0.png,x\n", r"c.csv:1: no 'image' column \(columns: path, caption\)"),
    ("image,caption\nimg0.png,ok\nimg1.png,\n", r"c.csv:3: empty 'caption'"),
    ("image,caption\nimg0.png,ok\nimg1.png\n", r"c.csv:3: no 'caption' field"),
    ("image,caption\nmissing.png,hello\n", r"c.csv:2: 'image' 'missing.png' not found"),
])
def test_bad_csv_rows_name_file_line_and_field(tmp_path, text, msg):
    write_pngs(tmp_path, 2)
    (tmp_path / "c.csv").write_text(text)
    with pytest.raises(ValueError, match=msg):
        images.load(str(tmp_path / "c.csv"), 12, 1)


def test_captions_keep_commas_quotes_and_unusual_line_breaks(tmp_path):
    write_pngs(tmp_path, 2)
    (tmp_path / "c.jsonl").write_text(json.dumps({"image": "img0.png", "caption": "one\u2028line"}, ensure_ascii=False)
                                      + "\n" + json.dumps({"image": "img1.png", "caption": "b"}) + "\n", encoding="utf-8")
    assert images.load_captioned(tmp_path / "c.jsonl", 12, 1).captions == ["one\u2028line", "b"]
    (tmp_path / "c.csv").write_text('image,caption\nimg0.png,"red, round\nand ""big"""\nimg1.png,b\n')
    assert images.load_captioned(tmp_path / "c.csv", 12, 1).captions == ['red, round\nand "big"', "b"]
    (tmp_path / "d.csv").write_text('image,caption\nimg0.png,"a\nb"\nimg1.png,\n')
    with pytest.raises(ValueError, match=r"d.csv:4: empty 'caption'"):  # lines counted in the file, not rows
        images.load_captioned(tmp_path / "d.csv", 12, 1)
