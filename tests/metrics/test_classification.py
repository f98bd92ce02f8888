"""Classification metrics against cases computed by hand, and the plots they write."""
import numpy as np
import pytest

from genforge.metrics.classification import (classification_metrics, expected_calibration_error, plot_confusion,
                                             plot_roc, summarize)


def binary_case():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    return y, np.stack([1 - p1, p1], 1)


def test_binary_metrics_by_hand():
    y, probs = binary_case()
    m = classification_metrics(y, probs, ["neg", "pos"])
    # predictions 0, 1, 0, 1: one error in each class
    assert m["accuracy"] == 0.5
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    # positive scores 0.4, 0.9 vs negative 0.1, 0.6: 3 of 4 pairs ranked right
    assert m["roc_auc"] == pytest.approx(0.75)
    # confidences 0.9, 0.6, 0.6, 0.9; the 0.6 bin is all wrong (|0 - 0.6|), the 0.9 bin all right (|1 - 0.9|)
    assert m["ece"] == pytest.approx(0.5 * 0.6 + 0.5 * 0.1)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))
    assert m["per_class"]["neg"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_multiclass_precision_recall_f1_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 0, 2, 1])
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P 2/3 R 1, b: P 1/2 R 1/2, c: P 1 R 1/2
    assert m["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(0.5)
    f1 = [2 * (2 / 3) / (2 / 3 + 1), 0.5, 2 * 0.5 / 1.5]
    assert m["macro"]["f1"] == pytest.approx(np.mean(f1))
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert 0.0 < m["roc_auc"] < 1.0


def test_ece_is_zero_when_confidence_matches_accuracy():
    y = np.array([1, 1, 1, 0])  # predicted class 1 at 0.75 confidence, right 3 times of 4
    probs = np.tile([0.25, 0.75], (4, 1))
    assert expected_calibration_error(y, probs) == pytest.approx(0.0)


def test_summary_is_mean_and_std_over_folds():
    y, probs = binary_case()
    a = classification_metrics(y, probs, ["neg", "pos"])
    b = classification_metrics(y, np.stack([1 - y, y], 1).astype(float), ["neg", "pos"])
    s = summarize([a, b])
    assert s["accuracy"] == {"mean": 0.75, "std": 0.25}
    assert s["per_class.pos.f1"]["mean"] == pytest.approx(0.75)
    assert "confusion_matrix" not in s


def test_plots_are_written(tmp_path):
    y, probs = binary_case()
    plot_roc(y, probs, ["neg", "pos"], tmp_path / "roc.png")
    plot_confusion([[1, 1], [1, 1]], ["neg", "pos"], tmp_path / "cm.png")
    for name in ("roc.png", "cm.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
