"""The shared queue on the demo VQGAN+CLIP: order, stop through the folder, the device lock across
processes, a foreground CLI waiting its turn, and 20 runs from two processes surviving a killed worker."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logic import queue, runs
from logic.__main__ import main as cli_main
from process_helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {"prompt": "a red fox", "demo": True, "size": [32, 32], "cutn": 2, "seed": 7, "every": 1,
          "augment": False}


def status(path) -> str:
    return runs.effective_status(runs.read_details(path))["status"]


def test_worker_runs_the_queue_in_order_and_stops_a_queued_run(output_dir):
    worker = queue.Worker("cpu", output_dir)
    try:
        first = worker.submit("vqgan", {**PARAMS, "steps": 6})
        second = worker.submit("vqgan", {**PARAMS, "steps": 2})
        third = worker.submit("vqgan", {**PARAMS, "steps": 2})
        worker.stop(third.run_id)
        wait_until(lambda: all("device_time" in runs.read_details(s.run_dir) for s in (first, second)))
    finally:
        worker.close()
    assert [status(s.run_dir) for s in (first, second, third)] == [runs.DONE, runs.DONE, runs.STOPPED]
    ran = [runs.read_details(s.run_dir)["device_time"] for s in (first, second)]
    assert ran[0]["to"] <= ran[1]["from"]
    assert "device_time" not in runs.read_details(third.run_dir)  # never ran
    assert queue.entries(output_dir) == []


def test_a_closed_worker_is_never_handed_out_again(output_dir):
    """Closing the process's worker (an API server shutting down, a test) must not leave the next
    caller's runs queued forever: get_worker starts a new one."""
    closed = queue.get_worker("cpu", output_dir)
    closed.close(timeout=30)
    worker = queue.get_worker("cpu", output_dir)
    try:
        assert worker is not closed and not worker.closed
        state = worker.submit("vqgan", {**PARAMS, "steps": 2})
        wait_until(lambda: status(state.run_dir) == runs.DONE)
    finally:
        worker.close(timeout=30)


def test_queue_order_front_and_requeue(output_dir):
    made = [queue.enqueue("vqgan", {**PARAMS, "steps": 2, "prompt": f"run {i}"}, output_dir) for i in range(3)]
    assert [e.path for e in queue.entries(output_dir)] == [r.path for r in made]
    assert all(r.details["owner"] is None and r.details["request"]["prompt"] == f"run {i}"
               for i, r in enumerate(made))
    queue.move_to_front(made[2])
    assert [e.path for e in queue.entries(output_dir)] == [made[2].path, made[0].path, made[1].path]
    assert queue.request_stop(runs.open_run(made[0].path)) == runs.STOPPED
    assert status(made[0].path) == runs.STOPPED and len(queue.entries(output_dir)) == 2
    with pytest.raises(queue.UserError, match="not waiting in the queue"):
        queue.move_to_front(runs.open_run(made[0].path))
    with pytest.raises(queue.UserError, match="only an interrupted, failed or stopped run"):
        queue.requeue(runs.open_run(made[1].path))  # still queued
    queue.requeue(runs.open_run(made[0].path))
    assert [e.path for e in queue.entries(output_dir)][-1] == made[0].path
    assert not (made[0].path / runs.STOP_REQUEST).exists() and status(made[0].path) == runs.QUEUED


def test_a_lost_index_entry_is_rebuilt_from_the_folder(output_dir):
    run = queue.enqueue("vqgan", {**PARAMS, "steps": 2}, output_dir)
    assert queue.claim(run.path)  # as if the process died before writing the entry
    assert queue.entries(output_dir) == []
    assert queue.rebuild_index(output_dir) == [run.path.name]
    assert [e.path for e in queue.entries(output_dir)] == [run.path]


def test_a_cli_that_died_while_waiting_leaves_the_queue_as_interrupted(output_dir):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    token = {**runs.process_token(), "pid": int(dead.stdout)}
    run = queue.enqueue("vqgan", {**PARAMS, "steps": 2}, output_dir, held_by=token)
    assert queue.entries(output_dir)[0].held_by == token
    assert queue.clear_orphaned_entries(output_dir) == [run.run_id]
    assert queue.entries(output_dir) == [] and status(run.path) == runs.INTERRUPTED


def test_stop_through_the_folder_stops_a_running_run(output_dir):
    worker = queue.Worker("cpu", output_dir)
    try:
        state = worker.submit("vqgan", {**PARAMS, "steps": -1})
        wait_until(lambda: (runs.read_details(state.run_dir).get("progress") or {}).get("step", 0) >= 3)
        assert cli_main(["stop", state.run_id, "--output", str(output_dir)]) == 0  # as another process would
        wait_until(lambda: status(state.run_dir) == runs.STOPPED, timeout=60)
    finally:
        worker.close()
    assert (state.run_dir / runs.OUTPUT).is_file()


def test_foreground_cli_waits_for_the_device_and_then_runs(output_dir):
    lock = queue.DeviceLock("cpu")
    assert lock.try_acquire()
    other = runs.create_run(output_dir, "vqgan", {"prompt": "someone else's"})
    other.update(status=runs.RUNNING)
    lock.announce(other)
    assert [(device, run.run_id) for device, run in queue.running_runs(output_dir)] == [("cpu", other.run_id)]
    process = subprocess.Popen(
        [sys.executable, "-m", "logic", "vqgan", "--demo", "--prompt", "a fox", "--steps", "2", "--size", "32", "32",
         "--cutn", "2", "--device", "cpu", "--output", str(output_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = process.stderr.readline()
        assert f"Waiting for the run {other.run_id} to finish" in line
        waiting = wait_until(lambda: queue.entries(output_dir))
        assert waiting[0].held_by["pid"] == process.pid  # in the shared queue, but not for a worker to take
        assert status(waiting[0].path) == runs.QUEUED
    finally:
        lock.release()
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    assert status(Path(stdout.strip().splitlines()[-1])) == runs.DONE


SUBMITTER = textwrap.dedent("""
    import sys
    from logic.__main__ import main
    for i in range(10):
        assert main(["vqgan", "--demo", "--prompt", f"{sys.argv[1]} {i}", "--steps", "2", "--size", "32", "32",
                     "--cutn", "2", "--every", "1", "--no-augment", "--seed", str(i), "--device", "cpu",
                     "--output", sys.argv[2], "--queue"]) == 0
""")


def test_two_processes_queue_twenty_runs_and_a_killed_worker_loses_none(output_dir):
    def start(*args):
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=os.environ.copy(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    worker_cmd = ["-m", "logic", "worker", "--device", "cpu", "--output", str(output_dir)]
    submitters = [start("-c", SUBMITTER, name, str(output_dir)) for name in ("app", "cli")]
    workers = [start(*worker_cmd), start(*worker_cmd)]
    try:
        def finished():
            return [d for d in map(runs.read_details, output_dir.glob("*-*")) if d and d["status"] in runs.FINISHED]

        wait_until(lambda: len(finished()) >= 5, timeout=240)
        holder = wait_until(lambda: (queue.DeviceLock("cpu").holder() or {}).get("owner"), timeout=60)
        victim = next(w for w in workers if w.pid == holder["pid"])
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        workers.append(start(*worker_cmd))  # restarted
        for process in submitters:
            assert process.wait(240) == 0, process.stderr.read()
        folders = sorted(p for p in output_dir.iterdir() if not p.name.startswith("."))
        assert len(folders) == 20
        wait_until(lambda: all(status(p) in runs.FINISHED for p in folders), timeout=300)
        interrupted = [p for p in folders if status(p) == runs.INTERRUPTED]
        assert len(interrupted) <= 1  # the one the killed worker was running, if any
        for path in interrupted:
            assert cli_main(["queue", "--requeue", path.name, "--output", str(output_dir)]) == 0
        # device_time is written just after the final status: wait for both
        wait_until(lambda: all(status(p) == runs.DONE and "device_time" in runs.read_details(p) for p in folders),
                   timeout=120)
    finally:
        for process in workers + submitters:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in workers + submitters:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    details = [runs.read_details(p) for p in folders]
    assert sorted(d["prompt"] for d in details) == sorted(f"{n} {i}" for n in ("app", "cli") for i in range(10))
    windows = sorted((d["device_time"]["from"], d["device_time"]["to"]) for d in details)
    for (_, end), (start_next, _) in zip(windows, windows[1:]):
        assert end <= start_next, "two runs used the device at once"
    assert len({d["device_time"]["pid"] for d in details}) >= 2  # the work really was shared and resumed
    assert queue.entries(output_dir) == []
