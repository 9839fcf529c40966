import json
import os
import subprocess
import sys
import threading

from PIL import Image

from logic import runs


def test_create_run_writes_the_contract(output_dir):
    run = runs.create_run(output_dir, "vqgan", {"prompt": "a fox", "steps": 5})
    name_stamp, run_id = run.path.name.split("-", 1)
    assert len(name_stamp) == 15 and name_stamp[8] == "T" and run_id == run.run_id
    details = json.loads((run.path / "details.json").read_text())
    assert details["status"] == "queued" and details["schema"] == runs.SCHEMA
    assert details["prompt"] == "a fox" and details["progress"] == {"step": 0, "total": 5}
    assert details["owner"]["pid"] == os.getpid()


def test_updates_are_atomic_for_concurrent_readers(output_dir):
    run = runs.create_run(output_dir, "vqgan", {"prompt": "x" * 5000})
    errors, stop = [], threading.Event()

    def read_repeatedly():
        while not stop.is_set():
            try:
                json.loads((run.path / "details.json").read_text())
            except ValueError as exc:  # a half-written file
                errors.append(exc)

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    for step in range(200):
        run.update(progress={"step": step, "total": 200}, blob="y" * (step * 37 % 4000))
    stop.set()
    reader.join()
    assert errors == []
    assert not [p for p in run.path.iterdir() if p.name.startswith(".tmp-")]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_running_run_of_a_dead_process_is_marked_interrupted(output_dir):
    alive = runs.create_run(output_dir, "vqgan", {"prompt": "mine"})
    alive.update(status=runs.RUNNING)
    dead = runs.create_run(output_dir, "vqgan", {"prompt": "orphan"})
    dead.update(status=runs.RUNNING, owner={**dead.details["owner"], "pid": _dead_pid()})
    done = runs.create_run(output_dir, "vqgan", {"prompt": "finished"})
    done.update(status=runs.DONE, owner={**done.details["owner"], "pid": _dead_pid()})

    assert runs.find_run(output_dir, dead.run_id).status == runs.INTERRUPTED  # read-only view
    assert runs.read_details(dead.path)["status"] == runs.RUNNING
    assert runs.mark_interrupted_runs(output_dir) == [dead.run_id]
    assert runs.read_details(dead.path)["status"] == runs.INTERRUPTED
    assert runs.read_details(alive.path)["status"] == runs.RUNNING
    assert runs.read_details(done.path)["status"] == runs.DONE


def test_a_reused_pid_does_not_count_as_the_owner(output_dir):
    run = runs.create_run(output_dir, "vqgan", {"prompt": "x"})
    run.update(status=runs.RUNNING, owner={**run.details["owner"], "start": "1"})
    assert runs.mark_interrupted_runs(output_dir) == [run.run_id]


def test_listing_skips_broken_folders_and_reads_legacy_ones(output_dir, caplog):
    good = runs.create_run(output_dir, "vqgan", {"prompt": "good"})
    (output_dir / "20200101T000000-broken").mkdir()
    (output_dir / "20200101T000000-broken" / "details.json").write_text("{not json")
    (output_dir / "20200101T000001-empty").mkdir()
    legacy = output_dir / "20210801T120000"
    legacy.mkdir()
    Image.new("RGB", (8, 8), "red").save(legacy / "output.PNG")
    (legacy / "details.json").write_text(json.dumps({"text_input": "old fox", "num_steps": 100, "seed": 3}))
    Image.new("RGB", (8, 8)).save(legacy / "init-image.JPEG")
    legacy_no_image = output_dir / "20210801T120001"
    legacy_no_image.mkdir()
    (legacy_no_image / "details.json").write_text(json.dumps({"text_input": "lost"}))

    listed = {run.path.name: run for run in runs.list_runs(output_dir)}
    assert set(listed) == {good.path.name, legacy.name}
    old = listed[legacy.name].details
    assert old["prompt"] == "old fox" and old["legacy"] and old["status"] == runs.DONE
    assert old["legacy_inputs"] == ["init-image.JPEG"]
    assert runs.output_image(legacy, old).name == "output.PNG"
    assert "unreadable" in caplog.text


def test_metrics_survive_a_line_cut_short(output_dir):
    run = runs.create_run(output_dir, "vqgan", {"prompt": "x"})
    run.append_metrics([{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.8}])
    with open(run.file(runs.METRICS), "a") as handle:
        handle.write('{"step": 3, "lo')
    assert [row["loss"] for row in runs.read_metrics(run.path)] == [0.9, 0.8]
