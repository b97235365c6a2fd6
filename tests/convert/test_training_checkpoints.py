"""Training checkpoints convert: the weights entry is found (or named), the training state is left out and listed.

Issue 18: ``convert`` refused ordinary training checkpoints (``{"model", "optimizer", "epoch"}``)
with no hint, and one refused file stopped the whole folder. Every checkpoint here is built by
torch with fixed seeds, in the layouts the frameworks write.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from weightguard.cli import convert as convert_cli  # noqa: E402
from weightguard.cli.convert import run_conversion  # noqa: E402
from weightguard.convert.run import PROOF_NAME  # noqa: E402
from weightguard.policy.load import LoadedPolicy, load_builtin, load_policy  # noqa: E402


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))


def _trained(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """A model's state dict and a real Adam state after one step (tensors, ints, floats, tuples)."""
    model = _model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    return dict(model.state_dict()), opt.state_dict()


def plain_layout() -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    sd, opt = _trained()
    return {"model": sd, "optimizer": opt, "epoch": 3}, sd


def state_dict_layout() -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    sd, _ = _trained()
    return {"state_dict": sd, "epoch": 3, "step": 120}, sd


def tutorial_layout() -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    # The PyTorch "saving a general checkpoint" recipe.
    sd, opt = _trained()
    return {"epoch": 5, "model_state_dict": sd, "optimizer_state_dict": opt, "loss": 0.25}, sd


def deepspeed_layout() -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    # mp_rank_00_model_states.pt as DeepSpeed writes it (the optimizer lives in other files under ZeRO).
    sd, _ = _trained()
    shapes = OrderedDict((name, t.shape) for name, t in sd.items())  # torch.Size: allowed, as weights_only does
    checkpoint = {
        "module": OrderedDict(sd),
        "buffer_names": [],
        "optimizer": None,
        "param_shapes": [shapes],
        "lr_scheduler": None,
        "global_steps": 10,
        "dp_world_size": 1,
        "mp_world_size": 1,
        "ds_config": {"train_batch_size": 8, "zero_optimization": {"stage": 2}},
        "ds_version": "0.16.4",
    }
    return checkpoint, sd


def lightning_layout() -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    sd, opt = _trained()
    sd = {f"model.{k}": v for k, v in sd.items()}  # a LightningModule holds the network as an attribute
    checkpoint = {
        "epoch": 1,
        "global_step": 40,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict(sd),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 2, "completed": 1}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.5)}},
        "optimizer_states": [opt],
        "lr_schedulers": [{"step_size": 10, "gamma": 0.1, "base_lrs": [1e-3], "last_epoch": 1}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 1e-3, "hidden": 3},
    }
    return checkpoint, sd


LAYOUTS: dict[str, tuple[Callable[[], tuple[dict[str, object], dict[str, torch.Tensor]]], str, str, list[str]]] = {
    "model": (plain_layout, "model", "wrapped", ["epoch", "optimizer"]),
    "state_dict": (state_dict_layout, "state_dict", "wrapped", ["epoch", "step"]),
    "model_state_dict": (
        tutorial_layout,
        "model_state_dict",
        "wrapped",
        ["epoch", "loss", "optimizer_state_dict"],
    ),
    "deepspeed": (
        deepspeed_layout,
        "module",
        "deepspeed",
        sorted(
            ["buffer_names", "optimizer", "param_shapes", "lr_scheduler", "global_steps"]
            + ["dp_world_size", "mp_world_size", "ds_config", "ds_version"]
        ),
    ),
    "lightning": (
        lightning_layout,
        "state_dict",
        "lightning",
        sorted(
            ["epoch", "global_step", "pytorch-lightning_version", "loops", "callbacks", "optimizer_states"]
            + ["lr_schedulers", "hparams_name", "hyper_parameters"]
        ),
    ),
}


def _convert(src: Path, out: Path, loaded: LoadedPolicy | None = None, **kw: object):
    return run_conversion(str(src), out, loaded or load_builtin("default"), **kw)  # type: ignore[arg-type]


def _save(path: Path, checkpoint: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def _assert_lossless(out_file: Path, expected: dict[str, torch.Tensor]) -> None:
    back = load_file(out_file)
    assert set(back) == set(expected)
    for name, tensor in expected.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_common_layout_is_recognised_and_only_its_weights_are_converted(tmp_path: Path, layout: str) -> None:
    build, entry, kind, left_out = LAYOUTS[layout]
    checkpoint, weights = build()
    _save(tmp_path / "src" / "last.ckpt", checkpoint)
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert result.converted, [(f.code, f.message) for f in result.findings]
    [converted] = result.proof.files
    assert (converted.unwrapped, converted.layout, converted.left_out) == (entry, kind, left_out)
    assert converted.compared == len(weights) and converted.dropped == []
    _assert_lossless(tmp_path / "out" / "last.safetensors", weights)
    # The report says what was left out.
    [note] = [f for f in result.findings if f.code == "WG-CNV-006"]
    assert all(name in note.message for name in left_out)
    written = json.loads((tmp_path / "out" / PROOF_NAME).read_text())
    assert written["files"][0]["left_out"] == left_out


def test_a_nested_weights_entry_is_refused_with_the_dotted_key_to_rerun_with(tmp_path: Path) -> None:
    sd, opt = _trained()
    _save(tmp_path / "src" / "ckpt.pt", {"model": {"state_dict": sd, "config": {"width": 3}}, "optimizer": opt})
    refused = _convert(tmp_path / "src", tmp_path / "out1")
    assert not refused.converted and not refused.written
    [record] = refused.proof.refused
    assert record.code == "WG-CNV-008"
    assert "holds keys model, optimizer" in record.reason and "--key model.state_dict" in record.hint
    assert not (tmp_path / "out1").exists()
    ok = _convert(tmp_path / "src", tmp_path / "out2", weight_keys=["model.state_dict"])
    assert ok.converted
    assert ok.proof.files[0].left_out == ["model.config", "optimizer"]
    _assert_lossless(tmp_path / "out2" / "ckpt.safetensors", sd)


def test_two_weight_like_entries_are_ambiguous_until_one_is_named(tmp_path: Path, write_policy) -> None:
    sd, opt = _trained(0)
    ema, _ = _trained(1)
    _save(tmp_path / "src" / "ckpt.pt", {"model": sd, "ema": ema, "optimizer": opt, "epoch": 2})
    refused = _convert(tmp_path / "src", tmp_path / "out1")
    [record] = refused.proof.refused
    assert "more than one entry could hold the weights" in record.reason
    assert record.hint.startswith("rerun with --key model or --key ema")
    # Named on the command line, or in the policy: the first name a checkpoint holds wins.
    by_key = _convert(tmp_path / "src", tmp_path / "out2", weight_keys=["ema"])
    assert by_key.proof.files[0].unwrapped == "ema"
    _assert_lossless(tmp_path / "out2" / "ckpt.safetensors", ema)
    loaded = load_policy(write_policy("conversion:\n  weight_keys: [shadow, model]"))
    by_policy = _convert(tmp_path / "src", tmp_path / "out3", loaded)
    assert by_policy.proof.files[0].unwrapped == "model"
    assert by_policy.proof.files[0].left_out == ["ema", "epoch", "optimizer"]
    _assert_lossless(tmp_path / "out3" / "ckpt.safetensors", sd)


def test_layouts_are_not_guessed_when_the_policy_turns_recognition_off(tmp_path: Path, write_policy) -> None:
    checkpoint, _ = plain_layout()
    _save(tmp_path / "src" / "ckpt.pt", checkpoint)
    loaded = load_policy(write_policy("conversion:\n  unwrap_state_dict: false"))
    assert [r.code for r in _convert(tmp_path / "src", tmp_path / "out1", loaded).proof.refused] == ["WG-CNV-002"]
    assert _convert(tmp_path / "src", tmp_path / "out2", loaded, weight_keys=["model"]).converted  # named still works


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_training_checkpoint_holding_a_global_the_restricted_loader_refuses_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    checkpoint, _ = lightning_layout()
    # Old Lightning checkpoints hold an argparse.Namespace: weightguard's scan allows it (it only sets
    # attributes), torch's weights_only unpickler does not; the file is refused with torch's reason.
    checkpoint["hyper_parameters"] = argparse.Namespace(lr=1e-3)
    _save(tmp_path / "src" / "last.ckpt", checkpoint)
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert not result.written
    [record] = result.proof.refused
    assert record.code == "WG-CNV-004" and "argparse.Namespace" in record.reason
    assert not (tmp_path / "out").exists()


def test_a_training_checkpoint_with_a_payload_is_refused_by_the_scan_and_never_loaded(tmp_path: Path) -> None:
    checkpoint, _ = lightning_layout()
    marker = tmp_path / "PWNED"
    checkpoint["hyper_parameters"] = {"lr": 1e-3, "x": _Payload(marker)}
    (tmp_path / "src").mkdir()
    torch.save(checkpoint, tmp_path / "src" / "last.ckpt", pickle_module=pickle)
    result = _convert(tmp_path / "src", tmp_path / "out")
    assert not result.written
    [record] = result.proof.refused
    assert record.code == "WG-CNV-001" and "system" in record.reason  # the blocking global is named
    assert not (tmp_path / "out").exists() and not marker.exists()


def _mixed_folder(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Path]:
    """One plain state dict, one training checkpoint, one malicious checkpoint, and a config."""
    good, _ = _trained(2)
    checkpoint, trained = plain_layout()
    marker = root / "PWNED"
    _save(root / "src" / "good.bin", good)
    _save(root / "src" / "train.ckpt", checkpoint)
    torch.save({"w": torch.ones(2), "x": _Payload(marker)}, root / "src" / "evil.bin", pickle_module=pickle)
    (root / "src" / "config.json").write_text('{"model_type": "toy"}')
    return good, trained, marker


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root (makes ``convert`` a subcommand)."""

    convert_cli.register(app)
    return app


@pytest.mark.parametrize("args", [[], ["--key", "model"]], ids=["recognised", "named"])
def test_a_folder_converts_file_by_file_and_refuses_only_the_malicious_file(
    app: typer.Typer, tmp_path: Path, args: list[str]
) -> None:
    good, trained, marker = _mixed_folder(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "src"), "-o", str(out), "--format", "json", *args])
    assert result.exit_code == 1, result.output  # some file was refused
    body = json.loads(result.stdout)
    assert (body["converted"], body["written"]) == (False, True)
    assert [r["path"] for r in body["proof"]["refused"]] == ["evil.bin"]
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "good.safetensors",
        "train.safetensors",
        PROOF_NAME,
    ]  # nothing for the refused file
    _assert_lossless(out / "good.safetensors", good)
    _assert_lossless(out / "train.safetensors", trained)
    assert "refused evil.bin (WG-CNV-001)" in result.stderr and "hint:" in result.stderr
    assert "weights from 'model' (" in result.stderr and "left out: epoch, optimizer" in result.stderr
    assert not marker.exists()


def test_all_or_nothing_writes_nothing_when_a_file_is_refused(app: typer.Typer, tmp_path: Path) -> None:
    _, _, marker = _mixed_folder(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "src"), "-o", str(out), "--all-or-nothing"])
    assert result.exit_code == 1, result.output
    assert "nothing was written" in result.stderr
    assert not out.exists() and not marker.exists()


def test_a_refused_training_checkpoint_names_its_keys_and_the_option_to_rerun_with(
    app: typer.Typer, tmp_path: Path
) -> None:
    sd, opt = _trained()
    _save(tmp_path / "src" / "ckpt.pt", {"model": sd, "ema": sd, "optimizer": opt, "epoch": 3})
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "src"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "holds keys model, ema, optimizer, epoch" in result.stderr
    assert "hint: rerun with --key model or --key ema" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_sharded_checkpoint_with_a_refused_shard_gets_no_index_pointing_at_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"a": torch.ones(2)}, src / "pytorch_model-00001-of-00002.bin")
    torch.save(
        {"b": torch.zeros(3), "x": _Payload(tmp_path / "PWNED")},
        src / "pytorch_model-00002-of-00002.bin",
        pickle_module=pickle,
    )
    index = {"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    result = _convert(src, tmp_path / "out")
    assert result.written and not result.converted
    assert sorted(r.path for r in result.proof.refused) == [
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model-00001-of-00002.safetensors", PROOF_NAME]
    written = json.loads((tmp_path / "out" / PROOF_NAME).read_text())
    assert [r["path"] for r in written["refused"]] == [
        r.path for r in result.proof.refused
    ]  # the output says what is missing
    assert not (tmp_path / "PWNED").exists()
