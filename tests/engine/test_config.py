from pathlib import Path

import pytest

from geoharmony.cli import main
from geoharmony.config import ConfigError, to_dict
from geoharmony.configure import from_dict, load_config
from presets import pretraining_presets

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("gh.enabeld=true", "gh.enabeld"),
        ("optim.lr=fast", "optim.lr"),
        ("gh.prior=magic", "gh.prior"),
        ("nonsense", "key=value"),
        ("method.name=byol", "method.name"),
    ],
)
def test_bad_overrides_name_the_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    preset = tmp_path / "bad.yaml"
    preset.write_text("optim:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.epoch"):
        load_config(preset)


def test_defaults_chain_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("optim:\n  epochs: 7\n  lr: 0.1\n")
    (tmp_path / "child.yaml").write_text("defaults: [parent.yaml]\noptim:\n  lr: 0.2\n")
    cfg = load_config(tmp_path / "child.yaml", ["optim.batch_size=64"])
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.optim.batch_size) == (7, 0.2, 64)
    assert from_dict(to_dict(cfg)) == cfg


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "pretrain",
            "--config",
            str(REPO / "configs/smoke.yaml"),
            "--output",
            str(tmp_path),
            "gh.wieght=2",
        ]
    )
    assert code == 2
    assert "gh.wieght" in capsys.readouterr().err


def test_every_preset_loads() -> None:
    presets = pretraining_presets()
    assert presets
    for preset in presets:
        load_config(preset)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gh.num_anchors=1", "gh.num_anchors=1 must be at least 2"),
        ("gh.allocation.epsilon=-1", "gh.allocation.epsilon=-1.0 must be positive"),
        ("gh.prior.refresh_every=0", "gh.prior.refresh_every=0 must be at least 1"),
        ("method.sdclr.prune_ratio=1.0", "method.sdclr.prune_ratio=1.0 must be in [0, 1)"),
        ("method.bcl.num_ops=0", "method.bcl.num_ops=0 must be at least 1"),
        ("method.dnc.kmeans_n_init=0", "method.dnc.kmeans_n_init=0 must be at least 1"),
    ],
)
def test_out_of_range_values_stop_before_training_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    args = ["pretrain", "--config", str(REPO / "configs/smoke.yaml"), "--output", str(tmp_path)]
    assert main([*args, override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geoharmony: error:") and message in err
    assert not (tmp_path / "checkpoints").exists()
