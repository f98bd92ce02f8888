"""Labelled text: formats, fields, labels, stratified splits and folds, and the errors users see."""
import gzip
import json

import numpy as np
import pytest

from genforge.data.labelled import (encode_labels, label_vocabulary, read_labelled, read_texts,
                                    stratified_folds, stratified_split)


def test_jsonl_gz_csv_and_folders_read_the_same_examples(tmp_path):
    rows = [{"review": "Great <br />film", "stars": "pos"}, {"review": "Bad, \"truly\"", "stars": "neg"}]
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "d.csv").write_text('review,stars\n"Great <br />film",pos\n"Bad, ""truly""",neg\n')
    for label, text in (("pos", "Great <br />film"), ("neg", 'Bad, "truly"')):
        (tmp_path / "split" / label).mkdir(parents=True)
        (tmp_path / "split" / label / "0_1.txt").write_text(text)
    (tmp_path / "split" / "unsup").mkdir()
    (tmp_path / "split" / "unsup" / "0_0.txt").write_text("unlabelled, skipped")
    a = read_labelled(tmp_path / "d.jsonl.gz", "review", "stars")
    b = read_labelled(tmp_path / "d.csv", "review", "stars")
    c = read_labelled(tmp_path / "split")
    assert a.texts == b.texts and a.labels == b.labels == ["pos", "neg"]
    assert sorted(zip(c.texts, c.labels)) == sorted(zip(a.texts, a.labels))


def test_integer_labels_sort_numerically_and_strings_alphabetically():
    assert label_vocabulary(["10", "2", "1", "2"], "x") == ["1", "2", "10"]
    assert label_vocabulary(["pos", "neg"], "x") == ["neg", "pos"]


def test_missing_field_names_line_and_field(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "fine", "label": 1}\n{"text": "no label here"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: missing field 'label'"):
        read_labelled(p)
    (tmp_path / "d.csv").write_text("body,label\nhello,1\n")
    with pytest.raises(ValueError, match=r"no field 'text'"):
        read_labelled(tmp_path / "d.csv")


def test_empty_text_and_bad_labels_are_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "ok", "label": 1}\n{"text": "   ", "label": 0}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: empty text in field 'text'"):
        read_labelled(p)
    p.write_text('{"text": "ok", "label": [1]}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:1: field 'label' holds \[1\]"):
        read_labelled(p)


def test_non_utf8_names_the_line_and_replace_reads_on(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "ok", "label": 1}\n{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: invalid UTF-8 \(byte 0xe9\)"):
        read_labelled(p)
    assert read_labelled(p, errors="replace").texts[1] == "caf\ufffd"
    (tmp_path / "f" / "pos").mkdir(parents=True)
    (tmp_path / "f" / "pos" / "1.txt").write_bytes(b"\xff bad")
    with pytest.raises(ValueError, match=r"1.txt: invalid UTF-8 at byte offset 0"):
        read_labelled(tmp_path / "f")


def test_aclimdb_root_gets_a_hint(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match="pass .*train or .*test"):
        read_labelled(tmp_path)


def test_one_class_and_unseen_labels(tmp_path):
    with pytest.raises(ValueError, match="only one class"):
        label_vocabulary(["1", "1"], "train.jsonl")
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 7}\n')
    with pytest.raises(ValueError, match=r"label\(s\) '7' never seen in training \(first at .*d.jsonl:2\)"):
        encode_labels(read_labelled(p), ["0", "1"])


def test_read_texts_txt_and_jsonl_without_labels(tmp_path):
    (tmp_path / "t.txt").write_text("first text\n\nsecond text\n")
    assert read_texts(tmp_path / "t.txt").texts == ["first text", "second text"]
    (tmp_path / "t.jsonl").write_text('{"text": "only text"}\n')
    assert read_texts(tmp_path / "t.jsonl").texts == ["only text"]


def test_stratified_split_keeps_proportions_and_is_seeded():
    y = np.array([0] * 80 + [1] * 20)
    tr, va = stratified_split(y, 0.25, seed=3)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    assert (y[va] == 0).sum() == 20 and (y[va] == 1).sum() == 5
    assert np.array_equal(va, stratified_split(y, 0.25, seed=3)[1])
    assert not np.array_equal(va, stratified_split(y, 0.25, seed=4)[1])


def test_folds_are_disjoint_cover_everything_and_are_stratified():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    folds = stratified_folds(y, 5, seed=0)
    allidx = np.concatenate(folds)
    assert sorted(allidx.tolist()) == list(range(100))  # disjoint and complete
    for f in folds:
        assert np.bincount(y[f], minlength=3).tolist() == [10, 6, 4]
    with pytest.raises(ValueError, match="smallest class has only 2"):
        stratified_folds(np.array([0, 0, 0, 1, 1]), 3, seed=0)
