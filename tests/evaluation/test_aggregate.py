"""Breast- and exam-level aggregation, its AUCs, and the report's --labels join."""

import csv
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from morphhr_tf.evaluation import aggregate, report


def _row(patient, study, lat, view, p, label=None, **extra):
    row = {"patient_key": patient, "study_key": study, "laterality": lat}
    row |= {"view": view, "probability": str(p), **extra}
    return row if label is None else row | {"label": str(label)}


# Patient a: one study, both breasts negative. Patient b: no study known, the
# left CC positive (its MLO not), the right breast negative.
ROWS = [
    _row("a", "s1", "L", "CC", 0.2, 0),
    _row("a", "s1", "L", "MLO", 0.6, 0),
    _row("a", "s1", "R", "CC", 0.1, 0),
    _row("a", "s1", "R", "MLO", 0.3, 0),
    _row("b", "", "LEFT", "CC", 0.9, 1),
    _row("b", "", "L", "MLO", 0.5, 0),
    _row("b", "", "R", "CC", 0.2, 0),
]


def test_breast_scores_mean_max_views_and_label_or():
    means = aggregate.breast_scores(ROWS, "mean")
    maxes = aggregate.breast_scores(ROWS, "max")
    keys = [(b["patient_key"], b["study_key"], b["laterality"]) for b in means]
    assert keys == [("a", "s1", "L"), ("a", "s1", "R"), ("b", "", "L"), ("b", "", "R")]
    assert [b["score"] for b in means] == pytest.approx([0.4, 0.2, 0.7, 0.2])
    assert [b["score"] for b in maxes] == pytest.approx([0.6, 0.3, 0.9, 0.2])
    assert [b["n_images"] for b in means] == [2, 2, 2, 1]
    assert [b["views"] for b in means] == ["CC+MLO", "CC+MLO", "CC+MLO", "CC"]
    assert [b["label"] for b in means] == [0, 0, 1, 0]  # b-L: CC positive


def test_exam_scores_three_ways_and_label_or():
    got = {h: aggregate.exam_scores(ROWS, h) for h in aggregate.EXAM_SCORES}
    assert [e["score"] for e in got["mean"]] == pytest.approx([0.3, 1.6 / 3])
    assert [e["score"] for e in got["max"]] == pytest.approx([0.6, 0.9])
    assert [e["score"] for e in got["max_breast_mean"]] == pytest.approx([0.4, 0.7])
    exams = got["max_breast_mean"]
    assert [(e["patient_key"], e["study_key"]) for e in exams] == [
        ("a", "s1"),
        ("b", ""),
    ]
    assert [e["n_images"] for e in exams] == [4, 3]
    assert [e["n_breasts"] for e in exams] == [2, 2]
    assert [e["label"] for e in exams] == [0, 1]
    assert aggregate.RECOMMENDED_EXAM_SCORE == "max_breast_mean"


def test_exam_by_study_or_patient():
    rows = ROWS[:4] + [_row("a", "s2", "L", "CC", 0.8, 1)]
    by_study = aggregate.exam_scores(rows, "max")
    assert [(e["study_key"], e["n_images"]) for e in by_study] == [("s1", 4), ("s2", 1)]
    (merged,) = aggregate.exam_scores(rows, "max", exam_by="patient")
    assert merged["study_key"] == "" and merged["n_images"] == 5
    assert merged["score"] == pytest.approx(0.8) and merged["label"] == 1
    breasts = aggregate.breast_scores(rows, exam_by="patient")
    assert [b["n_images"] for b in breasts] == [3, 2]


def test_rows_without_labels_give_no_label():
    rows = [{k: v for k, v in r.items() if k != "label"} for r in ROWS]
    assert "label" not in aggregate.breast_scores(rows)[0]
    assert "label" not in aggregate.exam_scores(rows)[0]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"patient_key": ""}, "empty patient_key"),
        ({"laterality": "both"}, "laterality must be L or R"),
        ({"probability": "nan"}, "finite number"),
        ({"probability": ""}, "finite number"),
        ({"label": "2"}, "label must be 0 or 1"),
        ({"label": ""}, "labels are inconsistent: 6 of 7"),
    ],
)
def test_invalid_rows_raise_naming_the_row(change, match):
    rows = [dict(r) for r in ROWS]
    rows[3].update(change)
    with pytest.raises(ValueError, match=match) as err:
        aggregate.breast_scores(rows)
    assert "row 3" in str(err.value)


def test_missing_columns_and_bad_arguments():
    rows = [{k: v for k, v in r.items() if k != "study_key"} for r in ROWS]
    with pytest.raises(ValueError, match="row 0 has no 'study_key'"):
        aggregate.exam_scores(rows)
    assert len(aggregate.exam_scores(rows, exam_by="patient")) == 2
    no_score = [{k: v for k, v in r.items() if k != "probability"} for r in ROWS]
    with pytest.raises(ValueError, match="no score column"):
        aggregate.breast_scores(no_score)
    with pytest.raises(ValueError, match="how must be one of"):
        aggregate.breast_scores(ROWS, "max_breast_mean")
    with pytest.raises(ValueError, match="exam_by must be one of"):
        aggregate.exam_scores(ROWS, exam_by="series")
    no_lat = [{k: v for k, v in r.items() if k != "laterality"} for r in ROWS]
    assert len(aggregate.exam_scores(no_lat, "mean")) == 2  # needs no laterality
    with pytest.raises(ValueError, match="no 'laterality'"):
        aggregate.exam_scores(no_lat, "max_breast_mean")


def test_partition_rows_and_tables():
    rows = ROWS + [
        _row("c", "", "L", "CC", "", status="rejected"),
        _row("", "", "", "", 0.5, status="ok"),
        _row("d", "s", "", "CC", 0.5, status="ok"),
    ]
    used, left_out = aggregate.partition_rows(rows)
    assert used == ROWS
    assert [r for _, r in left_out] == ["not scored", "no patient key", "no laterality"]
    breasts = aggregate.breast_table(used)
    assert list(breasts[0]) == list(aggregate.BREAST_FIELDS)
    assert (breasts[2]["mean_probability"], breasts[2]["max_probability"]) == (
        "0.700000",
        "0.900000",
    )
    exams = aggregate.exam_table(used)
    assert list(exams[0]) == list(aggregate.EXAM_FIELDS)
    assert exams[1]["max_breast_mean_probability"] == "0.700000"
    assert sum(b["n_images"] for b in breasts) == sum(e["n_images"] for e in exams)


def _random_rows(seed=0, patients=40):
    """Patients x {L, R} x {CC, MLO}, one positive breast in about a third."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        sick = rng.choice(["L", "R"]) if rng.uniform() < 0.35 else ""
        for lat in ("L", "R"):
            for view in ("CC", "MLO"):
                label = int(lat == sick and rng.uniform() < 0.8)
                prob = 1 / (1 + np.exp(-(1.5 * label + rng.normal())))
                rows.append(_row(f"p{p:02d}", "", lat, view, f"{prob:.6f}", label))
    return rows


def _reference(rows, group, pool):
    """Grouped labels (any) and scores (``pool``), by a plain dict."""
    groups = {}
    for r in rows:
        groups.setdefault(group(r), []).append(r)
    keys = sorted(groups)
    labels = [max(int(r["label"]) for r in groups[k]) for k in keys]
    scores = [pool([float(r["probability"]) for r in groups[k]]) for k in keys]
    return labels, scores


def test_level_aucs_equal_sklearn_on_aggregated_scores():
    rows = _random_rows()
    levels = {(lv, how.split()[0]): (n, pos, cell) for lv, how, n, pos, cell in
              report.level_aucs(rows)}  # fmt: skip
    breast = lambda r: (r["patient_key"], r["laterality"])  # noqa: E731
    exam = lambda r: r["patient_key"]  # noqa: E731
    means = {}
    for key in [
        ("breast", "mean"),
        ("breast", "max"),
        ("exam", "mean"),
        ("exam", "max"),
    ]:
        group = breast if key[0] == "breast" else exam
        y, s = _reference(rows, group, np.mean if key[1] == "mean" else np.max)
        means[key] = (y, s)
        n, pos, cell = levels[key]
        assert (n, pos) == (len(y), sum(y))
        assert float(cell.split()[0]) == pytest.approx(roc_auc_score(y, s), abs=5e-5)
    # max over breasts of the breast means, by hand
    y_b, s_b = means[("breast", "mean")]
    pairs = {}
    for (p, _), y, s in zip(sorted({breast(r) for r in rows}), y_b, s_b):
        old = pairs.get(p, (0, -1.0))
        pairs[p] = (max(old[0], y), max(old[1], s))
    y_e, s_e = zip(*(pairs[p] for p in sorted(pairs)))
    n, pos, cell = levels[("exam", "max_breast_mean")]
    assert float(cell.split()[0]) == pytest.approx(roc_auc_score(y_e, s_e), abs=5e-5)
    n, pos, cell = levels[("image", "probability")]
    y = [int(r["label"]) for r in rows]
    s = [float(r["probability"]) for r in rows]
    assert n == len(rows)
    assert float(cell.split()[0]) == pytest.approx(roc_auc_score(y, s), abs=5e-5)
    lo, hi = (float(x) for x in cell.split("[")[1].rstrip("]").split(","))
    assert lo < roc_auc_score(y, s) < hi


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_report_joins_predict_csv_and_labels_and_lists_what_is_left_out(tmp_path):
    rows = _random_rows(seed=1, patients=30)
    labels = [
        {"path": f"in/{i}.dcm", "label": r.pop("label")} for i, r in enumerate(rows)
    ]
    for i, r in enumerate(rows):
        r |= {"path": f"in/{i}.dcm", "status": "ok", "reason": ""}
    rows[0] |= {"probability": "", "status": "rejected", "reason": "empty file"}
    rows.append(_row("", "", "", "", 0.5, path="in/x.png", status="ok", reason=""))
    labels.append({"path": "./in/x.png", "label": "0"})  # normalized path
    rows.append(_row("q", "", "L", "CC", 0.5, path="in/nolabel.dcm", status="ok"))
    labels.append({"path": "in/gone.dcm", "label": "1"})
    labels.append(dict(labels[5]))  # a duplicate with the same label
    preds = _write_csv(tmp_path / "predictions.csv", rows)
    lab = _write_csv(tmp_path / "labels.csv", labels)
    out = tmp_path / "report"

    assert (
        report.main(["--predictions", preds, "--labels", lab, "--out", str(out)]) == 0
    )

    text = (out / "report.md").read_text()
    scored = [r for r in rows[1:-1]]
    y = {os.path.normpath(x["path"]): int(x["label"]) for x in labels}
    image_y = [y[r["path"]] for r in scored]
    image_s = [float(r["probability"]) for r in scored]
    assert f"{roc_auc_score(image_y, image_s):.4f}" in text
    used = [r | {"label": str(y[r["path"]])} for r in scored if r["patient_key"]]
    for how in aggregate.EXAM_SCORES:
        agg = aggregate.exam_scores(used, how)
        auc = roc_auc_score([a["label"] for a in agg], [a["score"] for a in agg])
        assert f"| exam | {how}" in text and f"{auc:.4f}" in text
    assert "| predictions | (left out of breast and exam) | | 1 |" in text
    assert "| predictions | no label | 1 |" in text
    assert "| predictions | no prediction | 1 |" in text
    assert "| predictions | not scored | 1 |" in text
    assert "in/" not in text  # the report holds counts, never case keys
    with open(out / "left_out.csv") as f:
        left = {r["key"]: r["reason"] for r in csv.DictReader(f)}
    assert left == {
        "in/0.dcm": "rejected by predict: empty file",
        "in/nolabel.dcm": "no label",
        "in/gone.dcm": "no prediction",
    }


def test_report_labels_errors(tmp_path):
    preds = _write_csv(tmp_path / "p.csv", [_row("a", "", "L", "CC", 0.5, path="x")])
    bad = _write_csv(tmp_path / "l1.csv", [{"path": "x", "label": "1"},
                                           {"path": "x", "label": "0"}])  # fmt: skip
    with pytest.raises(ValueError, match="'x' has labels 0 and 1"):
        report.build_report([preds], str(tmp_path / "r"), labels=bad)
    other = _write_csv(tmp_path / "l2.csv", [{"image_key": "k", "label": "1"}])
    with pytest.raises(ValueError, match="share no key column"):
        report.build_report([preds], str(tmp_path / "r"), labels=other)
    nomatch = _write_csv(tmp_path / "l3.csv", [{"path": "y", "label": "1"}])
    with pytest.raises(ValueError, match="has a label in"):
        report.build_report([preds], str(tmp_path / "r"), labels=nomatch)
    assert report.main(["--predictions", preds, "--labels", other,
                        "--out", str(tmp_path / "r")]) == 2  # fmt: skip
