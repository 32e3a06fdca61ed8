"""The task registry: configs, classes, units, labels and the errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from runtime.config import ConfigError
from tasks import (
    BASE_CONFIG,
    FINETUNE_CONFIG_DIR,
    METRIC_NAMES,
    TASKS,
    Task,
    aggregate,
    contiguous_segments,
    encode_labels,
    get_task,
    list_tasks,
    load_task_config,
    predict,
    recording_timelines,
    task_config_path,
    unit_index,
)

EXPECTED = {
    # name: (classes, unit, positive class, metrics)
    "artifact_detection": (
        ("clean", "artefact"),
        "window",
        "artefact",
        ("balanced_accuracy", "auroc", "auprc"),
    ),
    "onset_detection": (
        ("background", "seizure"),
        "window",
        "seizure",
        (
            "balanced_accuracy",
            "auroc",
            "auprc",
            "event_sensitivity",
            "event_precision",
            "event_f1",
            "false_alarms_per_24h",
        ),
    ),
    "seizure_type": (
        ("ABSZ", "FNSZ", "Spasm", "TCSZ"),
        "event",
        None,
        ("balanced_accuracy", "cohen_kappa", "weighted_f1"),
    ),
    "syndrome_classification": (
        ("CAE", "SeLECTS", "IESS", "LGS"),
        "subject",
        None,
        ("balanced_accuracy", "cohen_kappa", "weighted_f1"),
    ),
    "hie_grading": (
        ("normal_mild", "moderate", "severe", "inactive"),
        "recording",
        None,
        ("balanced_accuracy", "cohen_kappa", "weighted_f1"),
    ),
    "sleep_staging": (
        ("W", "N1", "N2", "N3", "REM"),
        "epoch",
        None,
        ("balanced_accuracy", "cohen_kappa", "weighted_f1"),
    ),
    "epileptiform_detection": (
        ("background", "epileptiform"),
        "window",
        "epileptiform",
        ("balanced_accuracy", "auroc", "auprc"),
    ),
    "swi_quantification": (
        ("background", "spike_wave"),
        "window",
        "spike_wave",
        ("balanced_accuracy", "auroc", "auprc", "swi_mae", "swi_pearson_r"),
    ),
    "harmful_brain_activity": (
        ("seizure", "lpd", "gpd", "lrda", "grda", "other"),
        "window",
        None,
        ("kl_divergence", "balanced_accuracy", "cohen_kappa"),
    ),
}


def test_registry_order_and_names():
    assert list_tasks() == list(TASKS) == list(EXPECTED)
    assert len(TASKS) == 9


@pytest.mark.parametrize("name", TASKS)
def test_registry_entry(name):
    classes, unit, positive, metrics = EXPECTED[name]
    task = get_task(name)
    assert task.name == name
    assert task.classes == classes
    assert task.unit == unit
    assert task.positive_class == positive
    assert task.metrics == metrics
    assert task.is_binary is (len(classes) == 2)
    assert task.positive_index == (None if positive is None else classes.index(positive))
    assert task.epoch_s == 30.0 and task.threshold == 0.5


@pytest.mark.parametrize("name", TASKS)
def test_task_file_changes_only_the_task_section(name):
    with open(task_config_path(name), encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert set(data) == {"task"}
    assert data["task"]["name"] == name
    # Everything else comes from _base.yaml unchanged.
    base = load_task_config(name)
    with open(BASE_CONFIG, encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    del base["task"], defaults["task"]
    assert base == defaults


def test_base_config_holds_the_paper_recipe():
    cfg = load_task_config("hie_grading")
    optim = cfg["optim"]
    assert (optim["base_lr"], optim["batch_size"], optim["weight_decay"]) == (1e-3, 64, 1e-4)
    assert optim["base_lr"] * optim["batch_size"] / 256 == pytest.approx(2.5e-4)
    assert (optim["epochs"], optim["warmup_epochs"], optim["layer_decay"]) == (100, 5, 0.65)
    assert cfg["early_stopping"]["patience"] == 30
    assert cfg["model"]["name"] == "m4cea_base" and cfg["model"]["drop_path_rate"] == 0.1
    assert cfg["head"]["linear_probe"] is False
    assert cfg["split"] == {
        "protocol": "subject_wise",
        "seed": 0,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
        "patient_specific_by": "recording",
        "allow_subject_overlap": False,
    }
    assert cfg["loss"] == {"class_weights": "none", "label_smoothing": 0.0}
    assert cfg["runtime"]["amp"] == "bf16" and cfg["runtime"]["seed"] == 42
    assert cfg["data"]["sampler"] == "shuffle"
    assert sorted(p.stem for p in FINETUNE_CONFIG_DIR.glob("*.yaml")) == sorted(("_base",) + TASKS)


def test_cohort_renames_and_adds_classes(tmp_path):
    user = tmp_path / "cohort.yaml"
    user.write_text("task:\n  classes: [CAE, SeLECTS, IESS, LGS, DEE-SWAS]\noptim:\n  epochs: 3\n")
    cfg = load_task_config("syndrome_classification", user, ["task.unit=recording"])
    task = get_task("syndrome_classification", cfg)
    assert task.classes == ("CAE", "SeLECTS", "IESS", "LGS", "DEE-SWAS")
    assert task.unit == "recording"
    assert cfg["optim"]["epochs"] == 3 and cfg["optim"]["batch_size"] == 64


def test_artefact_types_make_a_multiclass_task():
    cfg = load_task_config(
        "artifact_detection",
        overrides=[
            "task.classes=[clean,device,emg,movement,electrode,biological]",
            "task.positive_class=null",
            "task.metrics=[balanced_accuracy,cohen_kappa,weighted_f1]",
        ],
    )
    task = get_task("artifact_detection", cfg)
    assert not task.is_binary and task.n_classes == 6 and task.positive_index is None


def test_unknown_task_is_an_error_naming_the_tasks():
    with pytest.raises(ValueError, match="Allowed values are") as err:
        get_task("seizure_detection")
    for name in TASKS:
        assert name in str(err.value)
    assert "'seizure_detection'" in str(err.value)
    with pytest.raises(ValueError, match="seizure_detection"):
        load_task_config("seizure_detection")


def test_config_of_another_task_is_refused():
    with pytest.raises(ValueError, match="sleep_staging"):
        get_task("hie_grading", load_task_config("sleep_staging"))
    with pytest.raises(ValueError, match="task.name"):
        load_task_config("hie_grading", overrides=["task.name=sleep_staging"])


def test_unknown_config_key_and_wrong_type_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="task.n_classes"):
        load_task_config("hie_grading", overrides=["task.n_classes=4"])
    with pytest.raises(ConfigError, match="optim.epochs"):
        load_task_config("hie_grading", overrides=["optim.epochs=many"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes=("a",)), "at least two"),
        (dict(classes=("a", "b", "a")), "more than once"),
        (dict(unit="night"), "Allowed values are \\['window', 'epoch', 'event', 'recording', 'subject'\\]"),
        (dict(metrics=("accuracy",)), "Allowed values are \\['balanced_accuracy'"),
        (dict(metrics=()), "at least one"),
        (dict(positive_class=None), "positive_class"),
        (dict(positive_class="spike"), "positive_class"),
        (dict(threshold=1.5), "threshold"),
        (dict(epoch_s=0.0), "epoch_s"),
        (dict(smoothing_k=3, smoothing_n=2), "smoothing_k"),
    ],
)
def test_invalid_binary_task_definitions(kwargs, match):
    base = dict(
        name="x",
        classes=("background", "seizure"),
        unit="window",
        metrics=("auroc",),
        positive_class="seizure",
    )
    with pytest.raises(ValueError, match=match):
        Task(**{**base, **kwargs})


def test_binary_metrics_on_a_multiclass_task_are_refused():
    with pytest.raises(ValueError, match="need a binary task"):
        Task(name="x", classes=("a", "b", "c"), unit="window", metrics=("balanced_accuracy", "auroc"))
    with pytest.raises(ValueError, match="no positive class"):
        Task(
            name="x",
            classes=("a", "b", "c"),
            unit="window",
            metrics=("balanced_accuracy",),
            positive_class="a",
        )


def test_from_config_refuses_unknown_keys():
    section = dict(load_task_config("hie_grading")["task"], colour="red")
    with pytest.raises(ValueError, match="colour"):
        Task.from_config(section)


def test_metric_names_are_the_documented_ones():
    assert METRIC_NAMES == (
        "balanced_accuracy",
        "auroc",
        "auprc",
        "cohen_kappa",
        "weighted_f1",
        "event_sensitivity",
        "event_precision",
        "event_f1",
        "false_alarms_per_24h",
        "false_alarms_per_hour",
        "swi_mae",
        "swi_pearson_r",
        "kl_divergence",
    )


def test_encode_labels(make_rows):
    task = get_task("sleep_staging")
    rows = make_rows([("r1", 0, "N2"), ("r1", 4, "W"), ("r1", 8, "REM"), ("r1", 12, "N3")])
    labels = encode_labels(rows, task)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [2, 0, 4, 3])


def test_label_outside_the_task_names_label_row_file_and_allowed_values(make_rows):
    task = get_task("hie_grading")
    rows = make_rows([("r1", 0, "moderate"), ("r1", 4, "REM"), ("r2", 0, "REM"), ("r2", 4, "severe")])
    with pytest.raises(ValueError) as err:
        encode_labels(rows, task)
    message = str(err.value)
    assert "'REM'" in message and "2 of 4 rows" in message
    assert "row 1" in message and "segments/r1/r1_4000ms.pkl" in message
    assert "['normal_mild', 'moderate', 'severe', 'inactive']" in message


def test_unlabelled_window_is_an_error(make_rows):
    rows = make_rows([("r1", 0, "seizure"), ("r1", 4, None)])
    with pytest.raises(ValueError, match="None.*row 1"):
        encode_labels(rows, get_task("onset_detection"))


def test_contiguous_segments():
    starts = np.array([0.0, 4.0, 8.0, 16.0, 20.0, 30.0])
    np.testing.assert_array_equal(contiguous_segments(starts, np.full(6, 4.0)), [0, 0, 0, 1, 1, 2])
    # Overlapping windows (stride 2 s) are contiguous when the stride is given.
    np.testing.assert_array_equal(
        contiguous_segments(np.array([0.0, 2.0, 4.0, 8.0]), np.full(4, 2.0)), [0, 0, 0, 1]
    )


def test_recording_timelines_sort_by_time_and_refuse_duplicates(make_rows):
    task = get_task("onset_detection")
    rows = make_rows(
        [
            ("r2", 4, "background"),
            ("r1", 8, "seizure"),
            ("r1", 0, "seizure"),
            ("r2", 0, "background"),
            ("r1", 4, "seizure"),
        ]
    )
    timelines = recording_timelines(rows, task)
    assert list(timelines) == ["r1", "r2"]
    np.testing.assert_array_equal(timelines["r1"][0], [2, 4, 1])
    np.testing.assert_array_equal(timelines["r2"][0], [3, 0])
    with pytest.raises(ValueError, match="two windows starting at 4.0 s"):
        recording_timelines(rows + make_rows([("r1", 4, "seizure")]), task)


def test_window_length_needs_n_times_and_sfreq_or_window_s(make_rows):
    rows = make_rows([("r1", 0, "seizure"), ("r1", 4, "seizure")])
    del rows[1]["sfreq"]
    task = get_task("onset_detection")
    with pytest.raises(ValueError, match="task.window_s"):
        recording_timelines(rows, task)
    cfg = load_task_config("onset_detection", overrides=["task.window_s=4"])
    assert list(recording_timelines(rows, get_task("onset_detection", cfg))) == ["r1"]


def test_units_window_recording_subject(make_rows):
    rows = make_rows(
        [("s1", "r1", 0, "CAE"), ("s1", "r2", 0, "CAE"), ("s2", "r3", 4, "LGS"), ("s2", "r3", 0, "LGS")]
    )
    task = get_task("syndrome_classification")
    index, keys = unit_index(rows, task)
    assert keys == [("s1",), ("s2",)]
    np.testing.assert_array_equal(index, [0, 0, 1, 1])
    index, keys = unit_index(rows, Task("x", task.classes, "recording", task.metrics))
    assert keys == [("r1",), ("r2",), ("r3",)]
    np.testing.assert_array_equal(index, [0, 1, 2, 2])
    index, keys = unit_index(rows, Task("x", task.classes, "window", task.metrics))
    assert keys == [("r1", 0.0), ("r2", 0.0), ("r3", 0.0), ("r3", 4.0)]
    np.testing.assert_array_equal(index, [0, 1, 3, 2])


def test_epoch_unit_is_floor_of_start_over_30_s_with_majority_label(make_rows):
    task = get_task("sleep_staging")
    rows = make_rows(
        [
            ("n1", 0, "W"),
            ("n1", 10, "W"),
            ("n1", 20, "N1"),
            ("n1", 30, "N2"),
            ("n1", 59.5, "N2"),
            ("n2", 0, "N2"),
            ("n2", 10, "N1"),
        ],
        window_s=10.0,
    )
    index, keys = unit_index(rows, task)
    assert keys == [("n1", 0), ("n1", 1), ("n2", 0)]
    np.testing.assert_array_equal(index, [0, 0, 0, 1, 1, 2, 2])
    p = np.full((7, 5), 0.2)
    units = aggregate(task, rows, p)
    # n1/0: W, W, N1 -> W; n1/1: N2; n2/0: N2, N1 tie -> N1 (listed first in the classes).
    np.testing.assert_array_equal(units.labels, [0, 2, 1])
    np.testing.assert_array_equal(units.n_windows, [3, 2, 2])


def test_event_unit_runs_of_contiguous_windows_with_one_label(make_rows):
    task = get_task("seizure_type")
    rows = make_rows(
        [
            ("r1", 0, "ABSZ"),
            ("r1", 4, "ABSZ"),
            ("r1", 8, "ABSZ"),
            ("r1", 12, "FNSZ"),
            ("r1", 16, "FNSZ"),
            ("r1", 28, "FNSZ"),
            ("r1", 32, "FNSZ"),
            ("r2", 4, "TCSZ"),
            ("r2", 0, "TCSZ"),
        ]
    )
    index, keys = unit_index(rows, task)
    # The label change at 12 s and the gap between 16 s and 28 s each start a new event.
    assert keys == [("r1", 0), ("r1", 1), ("r1", 2), ("r2", 0)]
    np.testing.assert_array_equal(index, [0, 0, 0, 1, 1, 2, 2, 3, 3])
    # With a stride of 12 s the two FNSZ runs join.
    cfg = load_task_config("seizure_type", overrides=["task.stride_s=12"])
    _, keys = unit_index(rows, get_task("seizure_type", cfg))
    assert keys == [("r1", 0), ("r1", 1), ("r2", 0)]


def test_aggregate_means_window_probabilities(make_rows):
    task = get_task("hie_grading")
    rows = make_rows([("r1", 0, "moderate"), ("r1", 4, "moderate"), ("r2", 0, "inactive")])
    p = np.array([[0.6, 0.2, 0.1, 0.1], [0.2, 0.6, 0.1, 0.1], [0.0, 0.0, 0.1, 0.9]])
    units = aggregate(task, rows, p)
    assert units.keys == [("r1",), ("r2",)]
    np.testing.assert_allclose(units.probabilities, [[0.4, 0.4, 0.1, 0.1], [0.0, 0.0, 0.1, 0.9]])
    np.testing.assert_array_equal(units.labels, [1, 3])
    # Ties go to the first class.
    np.testing.assert_array_equal(predict(task, units.probabilities), [0, 3])


def test_recording_with_mixed_labels_is_an_error(make_rows):
    rows = make_rows([("r1", 0, "moderate"), ("r1", 4, "severe"), ("r2", 0, "severe")])
    match = "'r1' has windows with different labels .*'moderate': 1, 'severe': 1"
    with pytest.raises(ValueError, match=match):
        aggregate(get_task("hie_grading"), rows, np.full((3, 4), 0.25))


def test_probabilities_are_checked(make_rows):
    task = get_task("onset_detection")
    rows = make_rows([("r1", 0, "seizure"), ("r1", 4, "background")])
    with pytest.raises(ValueError, match=r"\(2, 2\).*got \(2, 3\)"):
        aggregate(task, rows, np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="summing to 1"):
        aggregate(task, rows, np.array([[2.0, -1.0], [0.3, 0.3]]))
    with pytest.raises(ValueError, match="no windows"):
        aggregate(task, [], np.zeros((0, 2)))


def test_binary_prediction_uses_the_threshold_on_the_positive_class():
    task = get_task("onset_detection")
    p = np.array([[0.9, 0.1], [0.5, 0.5], [0.45, 0.55], [0.7, 0.3]])
    np.testing.assert_array_equal(predict(task, p), [0, 1, 1, 0])
    cfg = load_task_config("onset_detection", overrides=["task.threshold=0.25"])
    np.testing.assert_array_equal(predict(get_task("onset_detection", cfg), p), [0, 1, 1, 1])
    # The positive class need not be the second column.
    flipped = Task("x", ("seizure", "background"), "window", ("auroc",), positive_class="seizure")
    np.testing.assert_array_equal(predict(flipped, p), [0, 0, 1, 0])


def test_label_vocabulary_is_every_task_label_once():
    """Preprocessing's default labels come from configs/finetune/*.yaml: the 28 names the preprocessing
    config used to list by hand, each task's classes included, each label once."""
    from tasks import label_vocabulary

    labels = label_vocabulary()
    assert len(labels) == len(set(labels)) == 28
    # The list (and its order) configs/preprocess/m4cea.yaml held: output folders made with it resume.
    assert labels == (
        "background", "seizure", "clean", "artefact", "device", "emg", "movement", "electrode",
        "biological", "ABSZ", "FNSZ", "Spasm", "TCSZ", "CAE", "SeLECTS", "IESS", "LGS", "normal_mild",
        "moderate", "severe", "inactive", "W", "N1", "N2", "N3", "REM", "epileptiform", "spike_wave",
    )  # fmt: skip
    for name in TASKS[:8]:
        assert set(get_task(name).classes) <= set(labels)
    # The HMS task's labels come from its adapter or the cohort's labels.classes: old folders resume.
    assert not {"lpd", "gpd", "lrda", "grda", "other"} & set(labels)


def test_preprocessing_labels_default_to_the_task_vocabulary(preprocess_config):
    from preprocess.labels import resolve_label_classes
    from preprocess.pipeline import Preprocessor
    from tasks import label_vocabulary

    config = preprocess_config()
    assert config["labels"]["classes"] is None  # no hand-kept copy in configs/preprocess/m4cea.yaml
    assert Preprocessor(config).config["labels"]["classes"] == list(label_vocabulary())
    assert config["labels"]["classes"] is None  # the caller's config is not modified
    own = preprocess_config("labels.classes=[a,b]")
    assert resolve_label_classes(own)["labels"]["classes"] == ["a", "b"]
    with pytest.raises(ValueError, match="labels.classes"):
        resolve_label_classes(preprocess_config("labels.classes=[a,'']"))
