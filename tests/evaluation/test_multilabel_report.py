"""The report CLI on multi-label (ChestX-ray14) predictions: both labels-file
formats, numbers against scikit-learn, left-out cases, the ROC grid, two
models compared per finding."""

import csv
import json
import math
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from morphhr_tf.evaluation import metrics as M
from morphhr_tf.evaluation import multilabel as ML
from morphhr_tf.evaluation import multilabel_io, report
from morphhr_tf.evaluation.multilabel_report import build_multilabel_report

FINDINGS = multilabel_io.FINDINGS
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 90


def _cases(seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=(N, 14)) < 0.3).astype(int)
    y[:, 13] = 0  # Hernia: no positive in these images
    strong = 1 / (1 + np.exp(-(2.5 * y - 1.2 + rng.normal(size=y.shape))))
    weak = 1 / (1 + np.exp(-(0.3 * y + rng.normal(size=y.shape))))
    names = [f"{i:08d}_000.png" for i in range(N)]
    return y, strong, weak, names


def _write_predictions(path, names, probs, *, rejected=(), extra=()):
    """The predict CLI's multi-label CSV: PNG inputs, so no image key."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "image_key", "status", "reason", *FINDINGS])
        for name, p in zip(names, probs):
            w.writerow([f"/data/images_001/images/{name}", "", "ok", "", *p.round(6)])
        for name in rejected:
            w.writerow([f"/data/{name}", "", "rejected", "unreadable PNG"] + [""] * 14)
        for name, p in extra:
            w.writerow([f"/data/images_002/images/{name}", "", "ok", "", *p])
    return str(path)


def _write_nih(path, names, y, extra_rows=()):
    """Data_Entry_2017.csv as NIH ships it: trailing empty column, No Finding."""
    with open(path, "w", newline="") as f:
        f.write(
            "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
            "Patient Gender,View Position,OriginalImage[Width,Height],"
            "OriginalImagePixelSpacing[x,y],\n"
        )
        rows = [
            (n, "|".join(f for f, v in zip(FINDINGS, row) if v) or "No Finding")
            for n, row in zip(names, y)
        ]
        for name, text in [*rows, *extra_rows]:
            f.write(f"{name},{text},0,{name[:8]},58,M,PA,2682,2749,0.143,0.143,\n")
    return str(path)


def _auc_cells(text):
    """``{finding: AUC text}`` of the first per-finding table."""
    cells = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 6 and parts[1] in FINDINGS and parts[1] not in cells:
            cells[parts[1]] = parts[4]
    return cells


def test_nih_labels_report_matches_sklearn(tmp_path):
    y, strong, _, names = _cases()
    preds = _write_predictions(
        tmp_path / "pred.csv",
        names,
        strong,
        rejected=["bad.png"],
        extra=[("99999999_000.png", [0.5] * 14)],  # no label
    )
    labels = _write_nih(
        tmp_path / "Data_Entry_2017.csv",
        names,
        y,
        extra_rows=[
            ("88888888_000.png", "Effusion"),  # no prediction
            ("77777777_000.png", "Infiltrate|Mass"),  # BBox spelling: unknown
        ],
    )
    out = tmp_path / "report"
    assert (
        report.main(["--predictions", preds, "--labels", labels, "--out", str(out)])
        == 0
    )
    text = (out / "report.md").read_text()
    cells = _auc_cells(text)
    assert list(cells) == list(FINDINGS)
    for j, finding in enumerate(FINDINGS[:13]):
        assert cells[finding].startswith(
            f"{roc_auc_score(y[:, j], strong[:, j]):.4f} ["
        )
    assert cells["Hernia"].startswith("n/a (single class: 0 positives")
    mean = np.mean([roc_auc_score(y[:, j], strong[:, j]) for j in range(13)])
    assert f"Mean AUC over 13 of 14 findings: {mean:.4f} [" in text
    assert "Left out of the mean (a single class in the data): Hernia." in text
    assert "joined on the base name of path = Image Index" in text
    with open(out / "left_out.csv", newline="") as f:
        left = {row["key"]: row["reason"] for row in csv.DictReader(f)}
    assert left == {
        "bad.png": "rejected by predict: unreadable PNG",  # by its join key
        "99999999_000.png": "no label",
        "88888888_000.png": "no prediction",
        "77777777_000.png": "unknown finding in labels: 'Infiltrate'",
    }
    assert "| pred | unknown finding in labels | 1 |" in text
    data = (out / "roc.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000
    js = json.loads((out / "report.json").read_text())
    per = js["models"]["pred"]["per_finding"]
    assert per[13]["auc"] is None and per[0]["auc"] == pytest.approx(
        roc_auc_score(y[:, 0], strong[:, 0])
    )
    assert js["models"]["pred"]["mean_auc"]["labels_excluded"] == ["Hernia"]
    assert js["models"]["pred"]["images"] == N


def test_column_labels_on_image_key_and_two_models(tmp_path):
    y, strong, weak, names = _cases(seed=1)
    keys = [f"key{i}" for i in range(N)]

    def write(path, probs, order):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "image_key", *FINDINGS])
            w.writerows([names[i], keys[i], *probs[i]] for i in order)
        return str(path)

    a = write(tmp_path / "strong.csv", strong, range(N))
    b = write(tmp_path / "weak.csv", weak, np.random.default_rng(0).permutation(N))
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_key", "Patient ID", *FINDINGS])
        w.writerows([k, "1", *row] for k, row in zip(keys, y))
    path = build_multilabel_report(
        [a, b], str(tmp_path / "r"), labels=str(labels), n_bootstrap=200
    )
    text = open(path).read()
    assert "joined on image_key" in text
    assert "## weak vs strong: DeLong per finding (90 images)" in text
    for j, finding in enumerate(FINDINGS[:13]):
        t = M.delong_test(y[:, j], weak[:, j], strong[:, j])
        row = f"| {finding} | {t.auc_a:.4f} | {t.auc_b:.4f} | {t.difference:+.4f} | {t.p_value:.3g} |"
        assert row in text
    assert "| Hernia | n/a | n/a | n/a | (single class" in text
    assert "Mean AUC difference over 13 findings:" in text
    assert not os.path.exists(tmp_path / "r" / "left_out.csv")
    js = json.loads(open(tmp_path / "r" / "report.json").read())
    diff = js["models"]["weak"]["vs_strong"]["mean_auc_difference"]
    assert diff["difference"] < 0 and diff["p_value"] < 0.05


def test_label_names_subset_and_path_join(tmp_path):
    y, strong, _, names = _cases(seed=2)
    preds = _write_predictions(tmp_path / "p.csv", names, strong)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "Effusion", "Mass", "Nodule"])
        w.writerows(
            [f"/data/images_001/images/{n}", *row[[2, 4, 5]]]
            for n, row in zip(names, y)
        )
    out = tmp_path / "r"
    argv = ["--predictions", preds, "--labels", str(labels), "--out", str(out)]
    assert (
        report.main(argv + ["--label-names", "Effusion", "Mass", "--ci", "delong"]) == 0
    )
    text = (out / "report.md").read_text()
    assert "Per-finding AUC CIs: DeLong's variance" in text
    for j, finding in ((2, "Effusion"), (4, "Mass")):
        r = ML.per_label_auc(y[:, [j]], strong[:, [j]], ci_method="delong")[0]
        assert f"| {finding} | {r.n_positive} | {r.n_negative} | {r} |" in text
    assert list(_auc_cells(text)) == ["Effusion", "Mass"]
    assert "joined on path" in text  # the image keys are empty
    assert "findings in the labels file not evaluated: ['Nodule']" in text
    # Without --label-names every finding column of the predictions is a label,
    # and the labels file lacks most of them: a clear error.
    with pytest.raises(ValueError, match=r"missing: \['Atelectasis', 'Cardiomegaly'"):
        build_multilabel_report([preds], str(out), labels=str(labels))


def test_column_labels_must_be_0_or_1(tmp_path):
    _, strong, _, names = _cases()
    preds = _write_predictions(tmp_path / "p.csv", names[:3], strong)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,Effusion\n/data/images_001/images/" + names[0] + ",2\n")
    with pytest.raises(
        ValueError, match=r"line 2: needs a path and 0/1 labels.*'Effusion': '2'"
    ):
        build_multilabel_report(
            [preds], str(tmp_path / "r"), labels=str(labels), label_names=["Effusion"]
        )


def test_nih_conflicts_and_ambiguous_rows(tmp_path):
    _, strong, _, names = _cases()
    preds = _write_predictions(tmp_path / "p.csv", names[:4], strong)
    conflict = _write_nih(
        tmp_path / "c.csv", [names[0], names[0]], [[1] + [0] * 13, [0] * 14]
    )
    with pytest.raises(ValueError, match="listed twice with different labels"):
        build_multilabel_report([preds], str(tmp_path / "r"), labels=conflict)
    mixed = _write_nih(
        tmp_path / "m.csv",
        names[:3],
        [[1] + [0] * 13] * 3,
        extra_rows=[(names[3], "No Finding|Mass")],
    )
    build_multilabel_report(
        [preds],
        str(tmp_path / "r"),
        labels=mixed,
        n_bootstrap=100,
        label_names=["Atelectasis"],
    )
    with open(tmp_path / "r" / "left_out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["reason"] for r in rows] == [
        "'No Finding' with findings in labels: 'No Finding|Mass'"
    ]
    # One class only for Atelectasis (3 positives): no mean, said so.
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Mean AUC: n/a (The mean AUC needs a label with both classes" in text


def test_binary_predictions_still_take_the_binary_report(tmp_path):
    p = tmp_path / "binary.csv"
    p.write_text("image_key,label,probability\na,0,0.1\nb,1,0.9\nc,0,0.4\nd,1,0.3\n")
    assert not multilabel_io.is_multilabel(str(p))
    assert multilabel_io.is_multilabel(str(p), ["probability"])
    _, strong, _, names = _cases()
    assert multilabel_io.is_multilabel(
        _write_predictions(tmp_path / "m.csv", names, strong)
    )


def test_multilabel_report_needs_labels(tmp_path, capsys):
    _, strong, _, names = _cases()
    preds = _write_predictions(tmp_path / "p.csv", names, strong)
    assert report.main(["--predictions", preds, "--out", str(tmp_path / "r")]) == 2
    assert "needs --labels" in capsys.readouterr().err


def test_unknown_label_names_are_an_error(tmp_path):
    _, strong, _, names = _cases()
    preds = _write_predictions(tmp_path / "p.csv", names, strong)
    with pytest.raises(ValueError, match=r"missing \['Infiltrate'\]"):
        multilabel_io.prediction_label_names(["path", *FINDINGS], ["Infiltrate"])
    with pytest.raises(
        ValueError, match="No prediction column is a ChestX-ray14 finding"
    ):
        multilabel_io.prediction_label_names(["path", "cancer"])
    assert math.isfinite(strong.sum()) and os.path.exists(preds)
