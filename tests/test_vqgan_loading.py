"""VQGAN loading from yaml + Lightning-layout checkpoints, and refusal of code-running pickles."""

import contextlib
import copy
import os
import pickle
import sys
import types

import pytest
import torch
import yaml

from logic.errors import UnsafeCheckpointError, UserError
from logic.models.checkpoints import convert_to_safetensors, load_checkpoint
from logic.models.demo import DEMO_VQGAN_CONFIG
from logic.models.vqgan import VqganFiles, build_vqgan, find_vqgan_pairs, load_vqgan, resolve_vqgan


def tiny_config(target="taming.models.vqgan.VQModel", **extra_params):
    config = copy.deepcopy(DEMO_VQGAN_CONFIG)
    config["model"]["target"] = target
    config["model"]["params"].update(extra_params)
    config["model"]["params"]["ddconfig"].update(ch=32, ch_mult=[1, 2], z_channels=8)
    config["model"]["params"].update(embed_dim=8, n_embed=32)
    return config


class LightningCallback:
    """Pickles as pytorch_lightning's ModelCheckpoint, which old Lightning files use as a dict key."""


LightningCallback.__module__, LightningCallback.__qualname__ = "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"


class AttributeDict(dict):
    """Pickles as Lightning's AttributeDict (hyper-parameters of old checkpoints)."""


AttributeDict.__module__ = "pytorch_lightning.utilities.parsing"


@contextlib.contextmanager
def lightning_names():
    """Make the Lightning module paths importable while pickling, as they are where real files were saved."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", LightningCallback.__module__,
             "pytorch_lightning.utilities", AttributeDict.__module__]
    saved = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[LightningCallback.__module__].ModelCheckpoint = LightningCallback
    sys.modules[AttributeDict.__module__].AttributeDict = AttributeDict
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_pair(folder, name, config, state_dict, prefix="", extra=None):
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    checkpoint = {
        "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8",
        "state_dict": {prefix + k: v for k, v in state_dict.items()} | {"loss.discriminator.weight": torch.ones(2)},
        "callbacks": {LightningCallback: {"best_model_score": torch.tensor(0.5)}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}],
    } | (extra or {})
    with lightning_names():
        torch.save(checkpoint, folder / f"{name}.ckpt")
    return VqganFiles(name, folder / f"{name}.yaml", folder / f"{name}.ckpt")


@pytest.mark.parametrize("target, extra", [
    ("taming.models.vqgan.VQModel", {}),
    ("taming.models.vqgan.GumbelVQ", {"kl_weight": 1e-8}),
])
def test_lightning_checkpoint_loads_key_for_key(tmp_path, target, extra):
    config = tiny_config(target, **extra)
    torch.manual_seed(1)
    reference, _ = build_vqgan(config)
    files = write_pair(tmp_path, "tiny", config, reference.state_dict())
    model = load_vqgan(files)
    assert model.gumbel == (target.endswith("GumbelVQ"))
    assert model.codebook.shape == (32, 8) and model.factor == 2
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    z = model.codebook[:4].T.reshape(1, 8, 2, 2)
    assert model.decode(z).shape == (1, 3, 4, 4)


def test_net2net_config_loads_its_first_stage(tmp_path):
    inner = tiny_config()["model"]
    config = {"model": {"target": "taming.models.cond_transformer.Net2NetTransformer",
                        "params": {"first_stage_config": inner, "transformer_config": {}}}}
    reference, _ = build_vqgan(tiny_config())
    files = write_pair(tmp_path, "net2net", config, reference.state_dict(), prefix="first_stage_model.")
    model = load_vqgan(files)
    assert torch.equal(model.codebook, reference.codebook)


def test_mismatched_pair_is_one_sentence(tmp_path):
    small, _ = build_vqgan(tiny_config())
    files = write_pair(tmp_path, "pair", DEMO_VQGAN_CONFIG, small.state_dict())
    with pytest.raises(UserError, match="does not match"):
        load_vqgan(files)


def test_pairs_are_found_by_name_and_by_path_stem(tmp_path):
    reference, _ = build_vqgan(tiny_config())
    write_pair(tmp_path, "mine", tiny_config(), reference.state_dict())
    (tmp_path / "lonely.yaml").write_text("model: {}")
    assert [p.name for p in find_vqgan_pairs(tmp_path)] == ["mine"]
    assert resolve_vqgan("mine", [tmp_path]).weights.name == "mine.ckpt"
    assert resolve_vqgan(str(tmp_path / "mine"), []).config.name == "mine.yaml"
    with pytest.raises(UserError, match=r"Unknown VQGAN model 'other'. Available: mine"):
        resolve_vqgan("other", [tmp_path])


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_running_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    reference, _ = build_vqgan(tiny_config())
    files = write_pair(tmp_path, "evil", tiny_config(), reference.state_dict(), extra={"payload": RunsCode(marker)})

    with pytest.raises(UnsafeCheckpointError, match=r"names posix.system, which could run code.*safetensors.*--trust-code"):
        load_vqgan(files)
    assert not marker.exists()


def test_plain_pickle_calling_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_convert_to_safetensors_then_load(tmp_path):
    reference, _ = build_vqgan(tiny_config())
    files = write_pair(tmp_path, "conv", tiny_config(), reference.state_dict())
    target = convert_to_safetensors(files.weights)
    files.weights.unlink()
    model = load_vqgan(VqganFiles("conv", files.config, target))
    assert torch.equal(model.codebook, reference.codebook)


def test_truncated_checkpoint_says_download_again(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match="download it again"):
        load_checkpoint(path)


def test_lightning_hyper_parameters_and_numpy_values_load(tmp_path):
    import argparse

    import numpy as np

    reference, _ = build_vqgan(tiny_config())
    extra = {"hparams": argparse.Namespace(base_lr=4.5e-6, batch_size=3),
             "hyper_parameters": AttributeDict(embed_dim=8, ckpt_path=None),
             "metrics": {"val/rec_loss": np.float32(0.25), "history": np.arange(4, dtype=">f8"),
                         "kinds": {np.dtype("int16")}, "tags": {"a", "b"}, "frozen": frozenset([1])}}
    files = write_pair(tmp_path, "hparams", tiny_config(), reference.state_dict(), extra=extra)

    loaded = load_checkpoint(files.weights)
    assert loaded["hparams"].batch_size == 3 and loaded["metrics"]["history"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert loaded["hyper_parameters"] == {"embed_dim": 8, "ckpt_path": None}
    assert loaded["metrics"]["val/rec_loss"] == np.float32(0.25) and loaded["metrics"]["tags"] == {"a", "b"}
    assert [kind.numpy() for kind in loaded["metrics"]["kinds"]] == [np.dtype("int16")]
    assert list(loaded["callbacks"]) == ["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]
    assert torch.equal(load_vqgan(files).codebook, reference.codebook)
