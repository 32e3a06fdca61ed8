"""runtime.config: defaults as schema, unknown keys, types, --set parsing, saved config round trip."""

from __future__ import annotations

import pytest
import yaml

from runtime.config import ConfigError, load_config, merge_config, parse_override, save_config

DEFAULTS = {
    "model": {"name": "m4cea_base", "depth": None},
    "optim": {"lr": 1.0e-3, "epochs": 100, "betas": [0.9, 0.999], "clip_grad": 20.0},
    "runtime": {"amp": "bf16", "compile": False},
}


@pytest.fixture
def defaults_file(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump(DEFAULTS, sort_keys=False))
    return path


def test_defaults_only(defaults_file):
    assert load_config(defaults_file) == DEFAULTS


def test_user_file_changes_a_subset(defaults_file, tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("optim:\n  epochs: 3\nruntime:\n  compile: true\n")
    cfg = load_config(defaults_file, user)
    assert cfg["optim"]["epochs"] == 3 and cfg["runtime"]["compile"] is True
    assert cfg["optim"]["lr"] == 1.0e-3 and cfg["model"] == DEFAULTS["model"]  # untouched keys kept


def test_unknown_key_in_file_names_key_and_file(defaults_file, tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"Unknown config key 'optim\.learning_rate' \(.*user\.yaml\)"):
        load_config(defaults_file, user)


def test_unknown_top_level_key_in_set(defaults_file):
    with pytest.raises(ConfigError, match=r"Unknown config key 'optimizer'.*--set optimizer\.lr=1"):
        load_config(defaults_file, overrides=["optimizer.lr=1"])


def test_wrong_type_is_refused(defaults_file):
    with pytest.raises(ConfigError, match=r"'optim\.epochs'.*expected int.*got str 'many'"):
        load_config(defaults_file, overrides=["optim.epochs=many"])
    with pytest.raises(ConfigError, match=r"'runtime\.compile'.*expected bool.*got int 1"):
        load_config(defaults_file, overrides=["runtime.compile=1"])  # bool is strict
    with pytest.raises(ConfigError, match=r"'optim\.epochs'.*expected int.*got float 2\.5"):
        load_config(defaults_file, overrides=["optim.epochs=2.5"])
    with pytest.raises(ConfigError, match=r"'optim'.*expected a mapping"):
        load_config(defaults_file, overrides=["optim=3"])


def test_int_widens_to_float(defaults_file):
    cfg = load_config(defaults_file, overrides=["optim.clip_grad=5"])
    assert cfg["optim"]["clip_grad"] == 5.0 and isinstance(cfg["optim"]["clip_grad"], float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optim.lr=1e-3", {"optim": {"lr": 1e-3}}),  # YAML 1.1 would read a string
        ("optim.lr=5E-4", {"optim": {"lr": 5e-4}}),
        ("optim.lr=-2.5e+2", {"optim": {"lr": -250.0}}),
        ("optim.epochs=7", {"optim": {"epochs": 7}}),
        ("optim.betas=[0.8, 0.95]", {"optim": {"betas": [0.8, 0.95]}}),
        ("montage.pairs=[FP1-F7,F7-T7]", {"montage": {"pairs": ["FP1-F7", "F7-T7"]}}),
        ("runtime.compile=true", {"runtime": {"compile": True}}),
        ("model.depth=null", {"model": {"depth": None}}),
        ("runtime.amp=fp16", {"runtime": {"amp": "fp16"}}),
        ("a.b.c=x=y", {"a": {"b": {"c": "x=y"}}}),  # only the first '=' splits
        ("name=", {"name": ""}),
    ],
)
def test_parse_override(text, expected):
    value = parse_override(text)
    assert value == expected
    leaf = value
    while isinstance(leaf, dict):
        leaf = next(iter(leaf.values()))
    flat = expected
    while isinstance(flat, dict):
        flat = next(iter(flat.values()))
    assert type(leaf) is type(flat)


@pytest.mark.parametrize("text", ["optim.lr", "=3", "optim..lr=3", ".lr=3"])
def test_parse_override_rejects_malformed(text):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override(text)


def test_set_lists_and_nested_keys(defaults_file):
    cfg = load_config(defaults_file, overrides=["optim.betas=[0.8,0.95]", "optim.lr=1e-4", "model.depth=3"])
    assert cfg["optim"]["betas"] == [0.8, 0.95]
    assert cfg["optim"]["lr"] == pytest.approx(1e-4)
    assert cfg["model"]["depth"] == 3  # a null default accepts any value


def test_later_overrides_win(defaults_file, tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("optim:\n  epochs: 3\n")
    cfg = load_config(defaults_file, user, ["optim.epochs=4", "optim.epochs=5"])
    assert cfg["optim"]["epochs"] == 5


def test_merge_does_not_modify_inputs():
    update = {"optim": {"epochs": 1}}
    merged = merge_config(DEFAULTS, update)
    assert (
        merged["optim"]["epochs"] == 1
        and DEFAULTS["optim"]["epochs"] == 100
        and update == {"optim": {"epochs": 1}}
    )


def test_saved_config_round_trip(defaults_file, tmp_path):
    cfg = load_config(defaults_file, overrides=["optim.lr=2e-4", "model.depth=3", "optim.betas=[0.8,0.9]"])
    saved = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(saved.read_text()) == cfg
    assert load_config(defaults_file, saved) == cfg  # the saved file is a valid config again
    assert not [p for p in saved.parent.iterdir() if p.name != "config.yaml"]  # no temporary file left


def test_missing_and_invalid_files(defaults_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(defaults_file, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(defaults_file, bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(defaults_file, listing)


def test_open_mapping_takes_keys_from_every_layer(tmp_path):
    # Before: the second --set reader.* was "Unknown config key 'reader.date_format'", because the first had
    # turned the open mapping {} into a mapping with one allowed key.
    path = tmp_path / "defaults.yaml"
    path.write_text("reader: {}\nlabels:\n  annotation_map: {}\n")
    user = tmp_path / "user.yaml"
    user.write_text("reader:\n  data_format: int32\nlabels:\n  annotation_map: {sz: seizure}\n")
    cfg = load_config(
        path, user, ["reader.data_format=int16", "reader.date_format=dd/mm/yy", "labels.annotation_map.bg=x"]
    )
    assert cfg["reader"] == {"data_format": "int16", "date_format": "dd/mm/yy"}
    assert cfg["labels"]["annotation_map"] == {"sz": "seizure", "bg": "x"}
