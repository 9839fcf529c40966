"""Loading never runs code: hostile files through every CLI path a person takes, and the process after.

Each payload is written in the on-disk format torch (or safetensors) really uses, with a marker file
the payload would create if any of its code ran. Every path must refuse it in one sentence (no
traceback), leave no marker, and leave the process as it was: a good file loads to the same
weights afterwards.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from logic.__main__ import main
from logic.errors import UnsafeCheckpointError, UserError
from logic.models import checkpoints
from logic.models.checkpoints import load_checkpoint
from logic.vqgan.continuation import STATE_FILE
from tests.test_vqgan_loading import build_vqgan, tiny_config, write_pair
from tests.vqgan_helpers import run_vqgan


# Payloads ------------------------------------------------------------------------------------------

class Reduce:
    """Pickles as a call of ``func(*args)``: the classic code-running pickle."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _wrap(payload) -> dict:
    return {"state_dict": {"w": torch.ones(2)}, "payload": payload}


def _zip_with_pickle(path: Path, data_pkl: bytes) -> None:
    """A torch zip archive whose data.pkl is ``data_pkl`` (what a hand-made hostile .ckpt holds)."""
    torch.save({"w": torch.ones(2)}, path)
    with zipfile.ZipFile(path) as original:
        entries = {name: original.read(name) for name in original.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data_pkl if name.endswith("/data.pkl") else data)


def _raw(*parts: bytes | str) -> bytes:
    """A protocol-2 pickle: bytes are opcodes as written, str parts become BINUNICODE strings."""
    encoded = [part if isinstance(part, bytes) else b"X" + struct.pack("<I", len(part.encode())) + part.encode()
               for part in parts]
    return b"\x80\x02" + b"".join(encoded)


def _touch(marker: Path) -> str:
    return f"touch {marker}"


def write_os_system(path, marker):
    torch.save(_wrap(Reduce(os.system, _touch(marker))), path)


def write_subprocess(path, marker):
    torch.save(_wrap(Reduce(subprocess.call, ["touch", str(marker)])), path)


def write_eval(path, marker):
    torch.save(_wrap(Reduce(builtins.eval, f"open({str(marker)!r}, 'w').close()")), path)


def write_getattr_import(path, marker):
    # getattr(__import__('os'), 'system')('touch marker')
    _zip_with_pickle(path, _raw(b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(", "os", b"tR", "system", b"tR(",
                                _touch(marker), b"tR."))


def write_getattr_globals(path, marker):
    # an allowed function's module globals: getattr(getattr(_rebuild_tensor_v2, '__globals__'), 'get')('os')
    _zip_with_pickle(path, _raw(b"cbuiltins\ngetattr\n(cbuiltins\ngetattr\n(ctorch._utils\n_rebuild_tensor_v2\n",
                                "__globals__", b"tR", "get", b"tR(", "os", b"tRq\x010cbuiltins\ngetattr\n(h\x01",
                                "system", b"tR(", _touch(marker), b"tR."))


def _short(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def write_dotted_global(path, marker):
    # protocol 4's STACK_GLOBAL resolves 'os.system' attribute by attribute from an allowed module
    _zip_with_pickle(path, b"\x80\x04" + _short("torch._utils") + _short("os.system") + b"\x93"
                     + _short(_touch(marker)) + b"\x85R.")


def write_torchscript(path, marker):
    class Tiny(torch.nn.Module):
        def forward(self, x):
            return x * 2

    torch.jit.save(torch.jit.script(Tiny()), str(path))


def write_build_class(path, marker):
    # BUILD on an allowed class: a normal unpickler sets attributes on collections.OrderedDict itself
    _zip_with_pickle(path, _raw(b"ccollections\nOrderedDict\n(N}(", "pwned", b"K\x01utb."))


def write_build_slots(path, marker):
    # BUILD's slot state: setattr on argparse.Namespace (the class, for every later Namespace)
    _zip_with_pickle(path, _raw(b"cargparse\nNamespace\n(N}(", "__repr__", "pwned", b"utb."))


def write_legacy_zipless(path, marker):
    torch.save(_wrap(Reduce(os.system, _touch(marker))), path, _use_new_zipfile_serialization=False)


def write_legacy_tar(path, marker):
    """torch < 0.4's tar layout: members 'storages', 'tensors' and 'pickle' (the last runs the payload)."""
    members = {"storages": pickle.dumps(0, protocol=2), "tensors": pickle.dumps(0, protocol=2),
               "pickle": pickle.dumps(Reduce(os.system, _touch(marker)), protocol=2)}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_plain_pickle(path, marker):
    path.write_bytes(pickle.dumps(Reduce(os.system, _touch(marker)), protocol=0))


PICKLE_PAYLOADS = {
    "os.system": (write_os_system, "names posix.system"),
    "subprocess": (write_subprocess, ".call, which"),   # protocol 2 writes it as Python 2's commands.call
    "eval": (write_eval, "names eval"),
    "getattr-import": (write_getattr_import, "names getattr"),
    "getattr-globals": (write_getattr_globals, "names getattr"),
    "dotted-global": (write_dotted_global, "names torch._utils.os.system"),
    "torchscript": (write_torchscript, "TorchScript archive"),
    "build-class": (write_build_class, "changes an object it did not make"),
    "build-slots": (write_build_slots, "changes an object it did not make"),
    "legacy-zipless": (write_legacy_zipless, "names posix.system"),
    "legacy-tar": (write_legacy_tar, "tar format"),
    "plain-pickle": (write_plain_pickle, "names posix.system"),
}


def _safetensors(path: Path, header: bytes, length: int | None = None, data: bytes = b"\0" * 8) -> None:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)


def write_header_past_end(path, marker):
    _safetensors(path, b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', length=1 << 20)


def write_offsets_out_of_range(path, marker):
    _safetensors(path, b'{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}')


def write_huge_header(path, marker):
    _safetensors(path, b"{}", length=1 << 62)


SAFETENSORS_PAYLOADS = {
    "header-past-end": (write_header_past_end, "header claims"),
    "offsets-out-of-range": (write_offsets_out_of_range, "lies outside the file"),
    "huge-header": (write_huge_header, "header claims"),
}


# The CLI paths -------------------------------------------------------------------------------------

def _one_sentence(capsys, code: int) -> str:
    """The error the CLI printed: one line, one sentence (progress lines before it are fine)."""
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert code != 0 and len(errors) == 1 and errors[0].count(". ") == 0, captured.err
    assert "Traceback" not in captured.err and errors[0] == captured.err.strip().splitlines()[-1]
    return errors[0]


def via_vqgan(tmp_path, weights: Path, output: Path) -> list[str]:
    (tmp_path / f"{weights.stem}.yaml").write_text(json.dumps(tiny_config()))
    return ["vqgan", "--vqgan", str(tmp_path / weights.stem), "--prompt", "a fox", "--steps", "1",
            "--output", str(output), "--device", "cpu"]


def via_diffusion(tmp_path, weights: Path, output: Path) -> list[str]:
    return ["diffusion", "--model", str(weights), "--prompt", "a fox", "--steps", "1", "--size", "32", "32",
            "--output", str(output), "--device", "cpu"]


def via_lora(tmp_path, weights: Path, output: Path) -> list[str]:
    return ["diffusion", "--demo", "--lora", str(weights), "--prompt", "a fox", "--steps", "1",
            "--output", str(output), "--device", "cpu"]


def via_convert(tmp_path, weights: Path, output: Path) -> list[str]:
    return ["convert", str(weights), "--output", str(tmp_path / "converted.safetensors")]


@pytest.fixture(scope="module")
def parent_run(tmp_path_factory):
    """A finished demo run that kept a state.pt, and a run continued from it (for rerun)."""
    root = tmp_path_factory.mktemp("parents")
    _, parent, _ = run_vqgan(root, steps=2)
    _, child, details = run_vqgan(root, steps=1, continue_from=str(parent.path))
    assert details["status"] == "done", details.get("error")
    return parent.path, child.path


def _hostile_parent(parent_run, tmp_path, writer, marker) -> tuple[Path, Path]:
    parent, child = (tmp_path / "parent", tmp_path / "child")
    shutil.copytree(parent_run[0], parent)
    shutil.copytree(parent_run[1], child)
    details = json.loads((child / "details.json").read_text())
    for record in ("request", "resolved", "params"):  # a rerun starts from the request
        if isinstance(details.get(record), dict):
            details[record]["continue_from"] = str(parent)
    (child / "details.json").write_text(json.dumps(details))
    writer(parent / STATE_FILE, marker)
    return parent, child


PATHS = {"vqgan": via_vqgan, "diffusion": via_diffusion, "convert": via_convert, "lora": via_lora}


@pytest.mark.parametrize("path_name", ["vqgan", "diffusion", "convert"])
@pytest.mark.parametrize("payload", list(PICKLE_PAYLOADS))
def test_hostile_checkpoint_is_refused_on_every_path(tmp_path, capsys, payload, path_name):
    writer, sentence = PICKLE_PAYLOADS[payload]
    marker, weights, output = tmp_path / "pwned", tmp_path / "evil.ckpt", tmp_path / "out"
    writer(weights, marker)
    line = _one_sentence(capsys, main(PATHS[path_name](tmp_path, weights, output)))
    assert sentence in line and "--trust-code" in line and "could run code" in line
    assert not marker.exists()
    assert not (tmp_path / "converted.safetensors").exists()


# Both read state.pt through the same load_checkpoint as every path above; each run builds the demo
# models first (~4 s), so a few payload kinds here, not all of them.
@pytest.mark.parametrize("how, payload", [("continue", "os.system"), ("continue", "torchscript"),
                                          ("continue", "build-class"), ("continue", "legacy-tar"),
                                          ("rerun", "getattr-globals")])
def test_hostile_state_pt_is_refused_when_continuing(tmp_path, capsys, parent_run, payload, how):
    writer, sentence = PICKLE_PAYLOADS[payload]
    marker = tmp_path / "pwned"
    parent, child = _hostile_parent(parent_run, tmp_path, writer, marker)
    output = tmp_path / "out"
    argv = (["vqgan", "--continue", str(parent), "--steps", "1"] if how == "continue"
            else ["rerun", str(child)]) + ["--output", str(output), "--device", "cpu"]
    line = _one_sentence(capsys, main(argv))
    assert sentence in line and "--trust-code" in line
    assert not marker.exists()


@pytest.mark.parametrize("path_name", ["vqgan", "diffusion", "lora"])
@pytest.mark.parametrize("payload", list(SAFETENSORS_PAYLOADS))
def test_lying_safetensors_header_is_one_sentence(tmp_path, capsys, payload, path_name):
    writer, sentence = SAFETENSORS_PAYLOADS[payload]
    weights = tmp_path / "evil.safetensors"
    writer(weights, tmp_path / "pwned")
    line = _one_sentence(capsys, main(PATHS[path_name](tmp_path, weights, tmp_path / "out")))
    assert sentence in line and "download it again" in line
    if path_name == "lora":  # checked with the other inputs, before a run folder exists
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("payload", ["os.system", "subprocess", "eval", "getattr-import", "getattr-globals",
                                     "dotted-global", "legacy-zipless", "plain-pickle"])
def test_the_payloads_are_live(tmp_path, payload):
    """Loaded the way torch did before weights_only, each payload does create its marker."""
    writer, _ = PICKLE_PAYLOADS[payload]
    marker = tmp_path / "pwned"
    writer(tmp_path / "evil.ckpt", marker)
    try:
        torch.load(tmp_path / "evil.ckpt", weights_only=False)
    except Exception:  # noqa: BLE001 - what the payload returns need not be a checkpoint
        pass
    assert marker.exists()


def test_convert_with_trust_code_still_converts_a_trusted_file(tmp_path, capsys):
    reference, _ = build_vqgan(tiny_config())
    files = write_pair(tmp_path, "trusted", tiny_config(), reference.state_dict(),
                       extra={"hparams": collections.Counter(a=1)})
    assert main(["convert", str(files.weights), "--trust-code"]) == 0
    target = Path(capsys.readouterr().out.strip())
    assert torch.equal(load_checkpoint(target)["quantize.embedding.weight"], reference.quantize.embedding.weight)


# The process after ---------------------------------------------------------------------------------

def _build_numpy_dtype_in_place(path):
    """numpy.dtype('f4', align=False, copy=False) is numpy's shared float32; BUILD would make it big-endian."""
    tampering = _raw(b"}(", "dtype", b"cnumpy\ndtype\n(", "f4", b"\x89\x89tR(K\x03", ">",
                     b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbu.")
    _zip_with_pickle(path, tampering)


def test_loading_changes_nothing_in_the_process(tmp_path):
    reference, _ = build_vqgan(tiny_config())
    good = write_pair(tmp_path, "good", tiny_config(), reference.state_dict(),
                      extra={"metrics": {"loss": np.float32(0.5), "curve": np.arange(3, dtype="<f4")}}).weights
    before = load_checkpoint(good)
    safe_globals = torch.serialization.get_safe_globals()

    tampering = tmp_path / "dtype.ckpt"
    _build_numpy_dtype_in_place(tampering)
    loaded = load_checkpoint(tampering)      # data only: it loads, as a dtype spec of our own
    assert loaded["dtype"].numpy() == np.dtype(">f4")
    for payload, (writer, _) in PICKLE_PAYLOADS.items():
        writer(tmp_path / f"{payload}.ckpt", tmp_path / "pwned")
        with pytest.raises(UnsafeCheckpointError):
            load_checkpoint(tmp_path / f"{payload}.ckpt")

    assert not (tmp_path / "pwned").exists()
    assert np.dtype("f4").byteorder == "=" and np.frombuffer(b"\x00\x00\x80?", "f4")[0] == 1.0
    assert "pwned" not in vars(collections.OrderedDict) and "__repr__" not in vars(argparse.Namespace)
    # torch registers its own globals as its modules import; ours are never left behind
    assert set(safe_globals) <= set(torch.serialization.get_safe_globals())
    assert not set(torch.serialization.get_safe_globals()) & set(checkpoints._STAND_INS)
    after = load_checkpoint(good)
    assert after["metrics"]["curve"].tolist() == [0.0, 1.0, 2.0] and after["metrics"]["loss"] == np.float32(0.5)
    for key, value in before["state_dict"].items():
        assert torch.equal(after["state_dict"][key], value), key


def test_old_good_files_still_load(tmp_path):
    """torch's pre-1.6 (non-zip) layout, and a Python 2 era protocol-2 pickle naming __builtin__.set."""
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    torch.save({"state_dict": weights, "tags": {"a"}}, tmp_path / "old.ckpt", _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(tmp_path / "old.ckpt")
    assert torch.equal(loaded["state_dict"]["w"], weights["w"]) and loaded["tags"] == {"a"}

    _zip_with_pickle(tmp_path / "py2.ckpt", _raw(b"}(", "tags", b"c__builtin__\nset\n]", "a", b"a\x85Ru."))
    assert load_checkpoint(tmp_path / "py2.ckpt") == {"tags": {"a"}}


def test_truncated_and_garbage_files_say_download_again(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(100)}}, good, _use_new_zipfile_serialization=False)
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:200])
    (tmp_path / "noise.ckpt").write_bytes(os.urandom(300))
    for name in ("cut.ckpt", "noise.ckpt"):
        with pytest.raises(UserError) as caught:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(caught.value)
