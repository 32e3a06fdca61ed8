"""The adapter interface: registry, options, interval merging, label coverage, command-line errors."""

import numpy as np
import pytest

from preprocess.channels import load_montage
from preprocess.datasets import get_adapter, list_adapters
from preprocess.datasets.base import (
    LayoutError,
    check_label_coverage,
    intervals_to_events,
    mask_to_events,
    parse_option,
)
from preprocess.datasets.prepare import dataset_config
from preprocess.events import Event
from tasks import list_tasks

ADAPTERS = [
    "bids",
    "chbmit",
    "cork_hie",
    "csv",
    "helsinki_artefacts",
    "helsinki_seizures",
    "hms",
    "sleep_edf",
    "tuar",
    "tuev",
    "tusz",
]


def test_registry_lists_every_adapter_and_refuses_unknown_names():
    assert list_adapters() == ADAPTERS
    with pytest.raises(ValueError, match=r"'dataset' parameter. Allowed values are \['bids', 'chbmit'"):
        get_adapter("chb-mit")


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_adapter_serves_registered_tasks_with_an_existing_montage(name):
    adapter = get_adapter(name)
    assert adapter.tasks and set(adapter.tasks) <= set(list_tasks())
    assert load_montage(adapter.montage).n_chans >= 2
    assert adapter.layout
    for task in adapter.tasks:
        config = dataset_config(adapter, task)
        assert config["montage"] == adapter.montage
        assert config["labels"]["classes"] == list(adapter.classes(task))
        assert config["labels"]["default"] in (None, *adapter.classes(task))


def test_options_are_checked():
    assert get_adapter("helsinki_seizures", rule="B").opts == {"partial": False, "rule": "B"}
    allowed = r"Allowed values are \['consensus', 'majority', 'any', 'A', 'B', 'C'\], but got 'D'"
    with pytest.raises(ValueError, match=allowed):
        get_adapter("helsinki_seizures", rule="D")
    with pytest.raises(ValueError, match=r"Invalid option\(s\) \['rules'\] for the dataset 'helsinki_s"):
        get_adapter("helsinki_seizures", rules="A")
    with pytest.raises(ValueError, match=r"'partial' option of the dataset 'tusz': expected bool"):
        get_adapter("tusz", partial="yes")
    assert get_adapter("tuev", val_fraction=0).opts["val_fraction"] == 0.0  # ints widen to floats
    with pytest.raises(ValueError, match=r"'val_fraction' option of the dataset 'tuev': it must lie in"):
        get_adapter("tuev", val_fraction=1)
    assert parse_option("rule=majority") == ("rule", "majority")
    assert parse_option("partial=true") == ("partial", True)
    assert parse_option("wake_edge_min=30") == ("wake_edge_min", 30)
    with pytest.raises(ValueError, match="expected key=value"):
        parse_option("majority")


def test_the_task_must_be_served():
    served = r"the dataset 'sleep_edf' serves the tasks \['sleep_staging'\], but got 'onset_detection'"
    with pytest.raises(ValueError, match=served):
        get_adapter("sleep_edf").check_task("onset_detection")


def test_intervals_to_events():
    # Two channels: a focal seizure on one overlaps background on another; priority decides.
    intervals = [(0, 10, "background"), (4, 8, "seizure"), (12, 14, "background")]
    events, conflict = intervals_to_events(intervals, priority=("seizure", "background"))
    assert events == [
        Event(0.0, 4.0, "background"),
        Event(4.0, 4.0, "seizure"),
        Event(8.0, 2.0, "background"),
        Event(12.0, 2.0, "background"),
    ]
    assert conflict == 0.0
    # Without priority two labels conflict (unlabelled, counted); weak labels give way; clipped at the end.
    intervals = [(0, 6, "emg"), (4, 10, "electrode"), (0, 20, "clean"), (2, 3, None)]
    events, conflict = intervals_to_events(intervals, end_s=12.0, weak=("clean",))
    assert events == [Event(0.0, 4.0, "emg"), Event(6.0, 4.0, "electrode"), Event(10.0, 2.0, "clean")]
    assert conflict == 2.0
    assert intervals_to_events([]) == ([], 0.0)


def test_mask_to_events_and_label_coverage():
    assert mask_to_events(np.array([0, 1, 1, 0, 1], bool), "seizure") == [
        Event(1.0, 2.0, "seizure"),
        Event(4.0, 1.0, "seizure"),
    ]
    check_label_coverage(["a.edf"], ["a.edf", "b.edf"], "labels.csv", partial=True, dataset="x")
    with pytest.raises(LayoutError, match=r"labels.csv lists 1 recording\(s\) absent from the x root: b.edf"):
        check_label_coverage(["a.edf"], ["a.edf", "b.edf"], "labels.csv", partial=False, dataset="x")
    with pytest.raises(LayoutError, match=r"1 recording\(s\) of the x root are missing from .*labels.csv"):
        check_label_coverage(["a.edf", "c.edf"], ["a.edf"], "labels.csv", partial=True, dataset="x")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "nope", "--task", "onset_detection"], "Allowed values are ['bids', 'chbmit'"),
        (["--dataset", "chbmit", "--task", "sleep_staging"], "serves the tasks ['onset_detection']"),
        (["--dataset", "chbmit"], "--dataset needs --task TASK"),
        (["--task", "onset_detection"], "--task and --dataset-option need --dataset NAME"),
        (
            ["--dataset", "chbmit", "--task", "onset_detection", "--dataset-option", "split=random"],
            "Allowed values are ['none', 'biot'], but got 'random'",
        ),
        (
            ["--dataset", "chbmit", "--task", "onset_detection", "--set", "windows=4"],
            "Unknown config key 'windows'",
        ),
    ],
)
def test_command_line_errors_exit_2(tmp_path, capsys, run_cli, args, message):
    status, text = run_cli(capsys, "--input", tmp_path, "--output", tmp_path / "out", *args)
    assert status == 2 and message in text
    assert not (tmp_path / "out").exists()


def test_a_root_of_the_wrong_layout_exits_2(tmp_path, capsys, run_cli):
    status, text = run_cli(
        capsys,
        "--dataset",
        "helsinki_seizures",
        "--task",
        "onset_detection",
        "--input",
        tmp_path,
        "--output",
        tmp_path / "out",
    )
    assert status == 2
    assert "No recording eegN.edf in the helsinki_seizures root" in text
    assert "Expected layout: ROOT/eeg1.edf" in text
