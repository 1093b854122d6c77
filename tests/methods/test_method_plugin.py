"""A method of the user's own, in a module outside geoharmony, run by import path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from geoharmony.cli import main
from geoharmony.config import ConfigError
from geoharmony.configure import load_config
from tiny_runs import SMOKE, TINY, needs_fashion_mnist

PLUGIN = textwrap.dedent(
    """
    from dataclasses import dataclass

    from geoharmony.methods import SimCLR


    @dataclass
    class ScaledOptions:
        scale: float = 1.0


    class ScaledSimCLR(SimCLR):
        '''SimCLR with its loss multiplied by ``method.ScaledSimCLR.scale``.'''

        Options = ScaledOptions

        def ssl_loss(self, z1, z2):
            return self.options.scale * super().ssl_loss(z1, z2)
    """
)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    module = tmp_path / "plugins"
    module.mkdir()
    (module / "user_ssl.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(module))
    return "user_ssl:ScaledSimCLR"


def test_a_user_method_declares_its_own_options(plugin: str) -> None:
    cfg = load_config(None, [f"method.name={plugin}", "method.ScaledSimCLR.scale=2.5"])
    assert cfg.method.ScaledSimCLR.scale == 2.5  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"ScaledSimCLR\.scal"):
        load_config(None, [f"method.name={plugin}", "method.ScaledSimCLR.scal=2"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_module_xyz:Thing", "cannot import 'no_such_module_xyz'"),
        ("json:NoSuchClass", "has no 'NoSuchClass'"),
        ("json:JSONDecoder", "not a subclass of geoharmony.methods.Method"),
        ("simclrr", "not one of bcl, dnc, focal, sdclr, simclr"),
    ],
)
def test_a_bad_method_name_is_a_clear_error(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"method.name={name}"])


@needs_fashion_mnist
def test_a_user_method_runs_through_the_cli_by_import_path(plugin: str, tmp_path: Path) -> None:
    out, plain = tmp_path / "run", tmp_path / "plain"
    tiny = [*TINY, "train.log_every=1"]
    user = [f"method.name={plugin}", "method.ScaledSimCLR.scale=0.5"]
    assert main(["pretrain", "--config", SMOKE, "--output", str(out), *tiny, *user]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ScaledSimCLR"
    assert metrics["config"]["method"]["ScaledSimCLR"] == {"scale": 0.5}
    # Its loss is SimCLR's scaled: before any update, the first step's is half a plain run's.
    assert main(["pretrain", "--config", SMOKE, "--output", str(plain), "--no-eval", *tiny]) == 0

    def first_ssl_loss(run: Path) -> float:
        for line in (run / "log.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record["kind"] == "train":
                assert record["step"] == 1
                return float(record["ssl_loss"])
        raise AssertionError(f"no train record in {run / 'log.jsonl'}")

    assert first_ssl_loss(out) == pytest.approx(0.5 * first_ssl_loss(plain), rel=1e-6)


def test_a_bad_import_path_exits_with_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    code = main(["pretrain", "--config", SMOKE, "--output", "/tmp/x", "method.name=nope_mod:X"])
    assert code == 2
    assert "cannot import 'nope_mod'" in capsys.readouterr().err
