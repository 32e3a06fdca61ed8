"""make_table.py's command line."""

from __future__ import annotations

import pytest

from scripts.make_table import build_parser


@pytest.mark.parametrize("seeds", [["42,2024"], ["42", "2024"], ["42,", "2024"]])
def test_seeds_comma_or_space_separated(seeds):
    args = build_parser().parse_args(["runs", "--seeds", *seeds])
    assert [seed for part in args.seeds for seed in part] == [42, 2024]


def test_seeds_default_and_bad_value(capsys):
    assert build_parser().parse_args(["runs"]).seeds is None  # main() uses PAPER_SEEDS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["runs", "--seeds", "42,x"])
    assert "expected integer seeds" in capsys.readouterr().err
