"""The command line for classifiers, in-process: train, eval, classify, cv, and the errors users see."""
import json

from genforge.cli import main

FAST = ["--data.buckets=4096", "--train.threads=1", "--train.batch_size=16", "--fit.epochs=3", "--fit.tune=false", "--no-progress"]


def test_train_eval_classify_cv(reviews, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "classifier", "--data", str(reviews), "--preset", "nbbag", "--out", str(run)] + FAST) == 0
    assert "genforge classify" in capsys.readouterr().out
    assert main(["eval", str(run), "--data", str(reviews)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] > 0.9 and {"roc_auc", "f1", "ece"} <= metrics.keys()
    assert (run / "eval" / "reviews" / "metrics.json").exists() and (run / "eval" / "reviews" / "roc.png").exists()

    assert main(["classify", str(run), "superb loved it", "awful and dull"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [l["label"] for l in lines] == ["1", "0"] and set(lines[0]["probs"]) == {"0", "1"}
    preds = tmp_path / "preds.jsonl"
    assert main(["classify", str(run), "--input", str(reviews), "--output", str(preds)]) == 0
    out = [json.loads(l) for l in preds.read_text().splitlines()]
    assert len(out) == 120 and {"text", "label", "probs"} <= out[0].keys()

    assert main(["cv", "--folds", "3", "--data", str(reviews), "--preset", "nbbag", "--out", str(tmp_path / "cv")]
                + [a for a in FAST if a.startswith("--data.") or a.startswith("--train.") or a.startswith("--fit.")]) == 0
    text = capsys.readouterr().out
    assert "3-fold cross-validation" in text and "accuracy" in text and "±" in text


def test_errors_are_one_line(reviews, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n{"review": "oops", "label": 0}\n')
    assert main(["train", "classifier", "--data", str(bad), "--out", str(tmp_path / "r")] + FAST) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2: missing field 'text'" in err and "Traceback" not in err
    run = tmp_path / "ok"
    assert main(["train", "classifier", "--data", str(reviews), "--preset", "nbbag", "--out", str(run)] + FAST) == 0
    capsys.readouterr()
    assert main(["classify", str(run), ""]) == 2
    assert "texts[0] is empty" in capsys.readouterr().err
    assert main(["classify", str(run), "--input", str(reviews)]) == 2
    assert "--input needs --output" in capsys.readouterr().err
