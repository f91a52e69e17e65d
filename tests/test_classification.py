"""Classification plug-in: record formats (the authors' npz, plain npz/CSV), AccuracyMetric, the study."""

import numpy as np
import pytest

from tinysaver_det.classification.metric import AccuracyMetric
from tinysaver_det.classification.records import (ClassifierRecord, RecordFormatError, load_authors_record,
                                                  load_record, load_scores, save_authors_record,
                                                  scores_to_probabilities, softmax)
from tinysaver_det.classification.study import ModelRecords, study_markdown, study_savers, write_study_csv

LABELS = np.array([3, 0, 2, 2, 1])
# Top-3 of the softmax per sample, by falling probability.
TOP3_PREDS = np.array([[3, 1, 0], [1, 0, 2], [2, 3, 1], [0, 2, 1], [1, 2, 3]])
TOP3_CONFS = np.array([[0.9, 0.05, 0.03], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.7, 0.2, 0.1], [0.8, 0.1, 0.1]])


def _write_like_the_authors(path, confs=None, **extra):
    """The arrays exactly as their OutputRecorder.save writes them for one standalone model (E = 1, topk = 3)."""
    np.savez_compressed(
        path,
        label=LABELS.astype(np.int16).reshape(-1, 1),  # (N, 1) int16
        confs=TOP3_CONFS.astype(np.float32)[None] if confs is None else confs,  # (1, N, k) float32
        preds=TOP3_PREDS.astype(np.int16)[None],  # (1, N, k) int16
        meta_info=np.array({"model": "resnet18"}),  # pickled object array: must not be needed
        **extra,
    )
    return path


def test_authors_npz_loads(tmp_path):
    record = load_authors_record(_write_like_the_authors(tmp_path / "resnet18_train.npz"))
    assert record.predictions.tolist() == [3, 1, 2, 0, 1]
    np.testing.assert_allclose(record.confidences, [0.9, 0.6, 0.5, 0.7, 0.8], rtol=1e-6)
    assert record.labels.tolist() == LABELS.tolist()
    assert record.correct.tolist() == [True, False, True, False, True]
    assert record.accuracy == pytest.approx(0.6)
    again = load_record(tmp_path / "resnet18_train.npz")  # recognised as the authors' format
    np.testing.assert_array_equal(again.confidences, record.confidences)
    np.testing.assert_array_equal(again.predictions, record.predictions)


@pytest.mark.parametrize("shape", ["(N,)", "(1, N)"])
def test_authors_npz_tolerates_flat_confidences(tmp_path, shape):
    top1 = TOP3_CONFS[:, 0].astype(np.float32)
    confs = top1 if shape == "(N,)" else top1[None]
    record = load_authors_record(_write_like_the_authors(tmp_path / "r.npz", confs=confs))
    np.testing.assert_allclose(record.confidences, top1)


def test_authors_npz_errors_name_the_file_and_array(tmp_path):
    path = tmp_path / "broken.npz"
    np.savez(path, confs=TOP3_CONFS[None], label=LABELS)
    with pytest.raises(RecordFormatError, match=r"broken\.npz.*'preds'"):
        load_authors_record(path)
    _write_like_the_authors(path, confs=np.zeros((1, 4, 3)))
    with pytest.raises(RecordFormatError, match=r"broken\.npz.*'confs'.*\(1, 4, 3\)"):
        load_authors_record(path)
    np.savez(path, confs=TOP3_CONFS[None], preds=TOP3_PREDS[None], label=LABELS[:4])
    with pytest.raises(RecordFormatError, match=r"broken\.npz.*'label' has 4"):
        load_authors_record(path)


def test_writer_produces_the_authors_exact_arrays(tmp_path):
    probs = softmax(np.random.default_rng(0).normal(size=(6, 4)))
    labels = np.array([0, 1, 2, 3, 0, 1])
    path = save_authors_record(tmp_path / "tiny_test", probs, labels, topk=2)
    assert path.name == "tiny_test.npz"
    with np.load(path) as data:
        assert sorted(data.files) == ["confs", "label", "preds"]
        assert (data["confs"].shape, data["confs"].dtype) == ((1, 6, 2), np.float32)
        assert (data["preds"].shape, data["preds"].dtype) == ((1, 6, 2), np.int16)
        assert (data["label"].shape, data["label"].dtype) == ((6, 1), np.int16)
        # What their exit_estimation.py reads: confs[:, :, 0], preds[0, :, 0], label.squeeze().
        np.testing.assert_array_equal(data["preds"][0, :, 0], probs.argmax(axis=1))
        np.testing.assert_allclose(data["confs"][:, :, 0][0], probs.max(axis=1), rtol=1e-6)
        np.testing.assert_array_equal(data["label"].squeeze(), labels)
        assert (np.diff(data["confs"][0], axis=1) <= 0).all()  # top-k by falling probability
    record = load_record(path)
    np.testing.assert_array_equal(record.predictions, probs.argmax(axis=1))
    with pytest.raises(ValueError, match="topk"):
        save_authors_record(tmp_path / "x.npz", probs, labels, topk=5)


def test_plain_npz_probabilities_and_logits(tmp_path):
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0]])
    labels = np.array([0, 2, 0])
    np.savez(tmp_path / "logits.npz", logits=logits, labels=labels)
    np.savez(tmp_path / "probs.npz", probs=softmax(logits), label=labels)
    from_logits = load_record(tmp_path / "logits.npz")
    from_probs = load_scores(tmp_path / "probs.npz")
    np.testing.assert_allclose(from_logits.confidences, softmax(logits).max(axis=1))
    np.testing.assert_allclose(from_probs.confidences, from_logits.confidences)
    assert from_logits.correct.tolist() == [True, True, False]
    # Logits that look like probabilities are only read as logits when told so.
    ambiguous = np.array([[0.2, 0.8], [0.5, 0.5]])
    np.testing.assert_allclose(scores_to_probabilities(ambiguous), ambiguous)
    np.testing.assert_allclose(scores_to_probabilities(ambiguous, kind="logits"), softmax(ambiguous))
    np.savez(tmp_path / "nolabels.npz", logits=logits)
    with pytest.raises(RecordFormatError, match=r"nolabels\.npz.*labels"):
        load_scores(tmp_path / "nolabels.npz")
    with pytest.raises(RecordFormatError, match=r"\.txt"):
        load_scores(tmp_path / "scores.txt")


def test_csv_scores(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("c0,c1,label,c2\n0.1,0.7,1,0.2\n0.6,0.3,2,0.1\n")
    record = load_scores(path)
    assert record.predictions.tolist() == [1, 0] and record.labels.tolist() == [1, 2]
    np.testing.assert_allclose(record.confidences, [0.7, 0.6])
    (tmp_path / "bad.csv").write_text("c0,c1\n0.5,0.5\n")
    with pytest.raises(RecordFormatError, match=r"bad\.csv.*'label'"):
        load_scores(tmp_path / "bad.csv")
    (tmp_path / "text.csv").write_text("c0,c1,label\n0.5,x,1\n")
    with pytest.raises(RecordFormatError, match=r"text\.csv.*number"):
        load_scores(tmp_path / "text.csv")


def test_accuracy_metric_by_hand():
    metric = AccuracyMetric([1, 0, 1, 0], [1, 1, 0, 0])
    assert metric.routed(np.array([False] * 4)) == {"top1": 0.5}
    assert metric.routed(np.array([True, False, True, False])) == {"top1": 0.75}
    assert metric.subset("saver", np.array([True, True, False, False])) == 0.5
    assert metric.subset("base", np.array([True, True, False, False])) == 1.0
    assert np.isnan(metric.subset("saver", np.zeros(4, bool)))
    with pytest.raises(ValueError, match="model"):
        metric.subset("teacher", np.ones(4, bool))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        metric.routed(np.ones(3, bool))
    a = ClassifierRecord([0.9, 0.8], [1, 0], [1, 1])
    b = ClassifierRecord([0.9, 0.8], [1, 0], [1, 0])
    with pytest.raises(ValueError, match="labels"):
        AccuracyMetric.from_records(a, b)


def test_study_selects_on_train_and_reports_test(tmp_path):
    labels = np.array([0, 1, 0, 1, 0, 1])
    conf = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    right = ClassifierRecord([0.99] * 6, labels, labels)
    base = ModelRecords("base", 100.0, right, right)
    # On train "good" is right on its top 4, "cheap" only on its top 1; on test both are right on the top 3.
    test = ClassifierRecord(conf, [0, 1, 0, 0, 1, 0], labels)
    good = ModelRecords("good", 10.0, ClassifierRecord(conf, [0, 1, 0, 1, 1, 0], labels), test)
    cheap = ModelRecords("cheap", 1.0, ClassifierRecord(conf, [0, 0, 0, 1, 0, 1], labels), test)
    study = study_savers(base, [cheap, good])
    assert study.selection.chosen == "good"  # 0.1 - 4/6 < 0.01 - 1/6
    assert study.table1["good"].at_drop[-1].cost == pytest.approx(10.0 + 0.5 * 100.0)  # exit the top 3, t = 0.61
    assert study.table1["good"].at_drop[-1].threshold == 0.61
    text = study_markdown(study, "FLOPs", "FLOPs = 2 * MACs")
    assert "FLOPs = 2 * MACs" in text and "| good |" in text
    names = sorted(p.name for p in write_study_csv(study, tmp_path))
    assert names == ["selection.csv", "sweep_cheap.csv", "sweep_good.csv", "table1.csv"]
