"""Shared test setup: every test writes into temporary folders; demo models are built once a session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def atelier_dirs(tmp_path_factory):
    """Point assets/ and output/ at temporary folders for the whole session."""
    assets = tmp_path_factory.mktemp("assets")
    output = tmp_path_factory.mktemp("output")
    locks = tmp_path_factory.mktemp("locks")  # device locks of this session only: other runs on the machine go on
    old = {key: os.environ.get(key) for key in ("ATELIER_ASSETS", "ATELIER_OUTPUT", "ATELIER_LOCKS")}
    os.environ["ATELIER_ASSETS"], os.environ["ATELIER_OUTPUT"] = str(assets), str(output)
    os.environ["ATELIER_LOCKS"] = str(locks)
    yield {"assets": assets, "output": output}
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def fresh_app_settings(atelier_dirs):
    """The app remembers its last settings in output/.app-settings.json: each test starts from
    defaults, also in an output folder a module fixture has made current (and leaves none behind)."""
    folders = {atelier_dirs["output"], Path(os.environ.get("ATELIER_OUTPUT") or atelier_dirs["output"])}
    for folder in folders:
        (folder / ".app-settings.json").unlink(missing_ok=True)
    yield
    for folder in folders:
        (folder / ".app-settings.json").unlink(missing_ok=True)


@pytest.fixture
def output_dir(tmp_path):
    """A fresh output folder for one test."""
    folder = tmp_path / "output"
    folder.mkdir()
    return folder
