"""load_config with a list of config files applied in order (defaults <- file 1 <- file 2 <- --set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import ConfigError, load_config

DEFAULTS = """\
model:
  name: m4cea_base
  drop_path_rate: 0.1
optim:
  lr: 1.0e-3
  epochs: 100
  betas: [0.9, 0.999]
task:
  name: null
  classes: []
"""


@pytest.fixture
def files(tmp_path):
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return dict(
        defaults=write("_base.yaml", DEFAULTS),
        task=write("task.yaml", "task:\n  name: hie_grading\n  classes: [a, b, c]\noptim:\n  epochs: 50\n"),
        user=write("user.yaml", "optim:\n  epochs: 7\n  lr: 2\n"),
        bad_key=write("bad_key.yaml", "optim:\n  learning_rate: 0.1\n"),
        bad_type=write("bad_type.yaml", "model:\n  drop_path_rate: high\n"),
        write=write,
    )


def test_layers_apply_in_order(files):
    cfg = load_config(files["defaults"], [files["task"], files["user"]], ["optim.epochs=3"])
    assert cfg == {
        "model": {"name": "m4cea_base", "drop_path_rate": 0.1},
        "optim": {"lr": 2.0, "epochs": 3, "betas": [0.9, 0.999]},
        "task": {"name": "hie_grading", "classes": ["a", "b", "c"]},
    }
    assert isinstance(cfg["optim"]["lr"], float)
    # Without --set the last file wins; reversed order, the task file wins.
    assert load_config(files["defaults"], [files["task"], files["user"]])["optim"]["epochs"] == 7
    assert load_config(files["defaults"], [files["user"], files["task"]])["optim"]["epochs"] == 50
    assert load_config(files["defaults"], (files["user"], files["task"]))["optim"]["lr"] == 2.0


def test_single_file_and_none_keep_the_old_behaviour(files):
    cfg = load_config(files["defaults"], files["user"])
    assert cfg["optim"] == {"lr": 2.0, "epochs": 7, "betas": [0.9, 0.999]}
    assert load_config(files["defaults"], str(files["user"]))["optim"]["epochs"] == 7
    assert load_config(files["defaults"])["optim"]["epochs"] == 100
    assert load_config(files["defaults"], None, ["model.name=m4cea_tiny"])["model"]["name"] == "m4cea_tiny"


def test_empty_list_none_entries_and_the_defaults_file_are_skipped(files):
    plain = load_config(files["defaults"])
    assert load_config(files["defaults"], []) == plain
    assert load_config(files["defaults"], [None, files["defaults"]]) == plain
    assert load_config(files["defaults"], [files["task"], None])["task"]["name"] == "hie_grading"


def test_every_layer_is_checked_against_the_defaults(files):
    # An error in the second file names that file and the key, even though the first file is fine.
    with pytest.raises(ConfigError, match=r"optim.learning_rate.*bad_key.yaml"):
        load_config(files["defaults"], [files["task"], files["bad_key"]])
    with pytest.raises(ConfigError, match=r"model.drop_path_rate.*bad_type.yaml.*expected float"):
        load_config(files["defaults"], [files["task"], files["bad_type"]])
    # A key that only a previous layer set (not the defaults) is still unknown: defaults are the schema.
    extra = files["write"]("extra.yaml", "task:\n  unit: window\n")
    with pytest.raises(ConfigError, match="task.unit"):
        load_config(files["defaults"], [files["task"], extra])


def test_missing_layer_and_invalid_entries(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        load_config(files["defaults"], [files["task"], tmp_path / "absent.yaml"])
    with pytest.raises(TypeError, match="'config' parameter"):
        load_config(files["defaults"], [files["task"], 3])


def test_later_null_clears_and_later_value_fills_an_optional_key(files):
    first = files["write"]("first.yaml", "task:\n  name: sleep_staging\n")
    second = files["write"]("second.yaml", "task:\n  name: null\n")
    assert load_config(files["defaults"], [first])["task"]["name"] == "sleep_staging"
    assert load_config(files["defaults"], [first, second])["task"]["name"] is None


def test_empty_mapping_default_is_an_open_map(tmp_path):
    from runtime.config import ConfigError, load_config

    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("labels:\n  annotation_map: {}\n  straddle: drop\n")
    config = load_config(defaults, overrides=["labels.annotation_map={Sz: seizure, Eyes closed: null}"])
    assert config["labels"]["annotation_map"] == {"Sz": "seizure", "Eyes closed": None}
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(defaults, overrides=["labels.annotation_map=[1]"])


def test_set_option_takes_several_values_and_repeats():
    import argparse

    from runtime.config import add_override_argument

    parser = argparse.ArgumentParser()
    add_override_argument(parser)
    args = parser.parse_args(["--set", "a=1", "b.c=2", "--set", "d=[x,y]"])
    assert args.overrides == ["a=1", "b.c=2", "d=[x,y]"]
    assert parser.parse_args([]).overrides == []
