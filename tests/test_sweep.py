"""The sweep runner with fake jobs: small Python scripts that sleep, log their GPU and write results.json."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from tools import sweep
from tools.sweep import SpecError, expand_grid, parse_overrides, run_local

ROOT = Path(__file__).resolve().parents[1]

FAKE_TRAIN = """
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--out"); parser.add_argument("--seed", type=int); parser.add_argument("--events")
parser.add_argument("--sleep", type=float, default=0.0); parser.add_argument("--fail-seed", type=int, default=-1)
args = parser.parse_args()
device = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
def event(kind):
    with open(args.events, "a") as handle:
        record = {"kind": kind, "time": time.time(), "device": device, "seed": args.seed, "pid": os.getpid()}
        handle.write(json.dumps(record) + "\\n")
event("start")
print(f"training seed {args.seed} on {device!r}", flush=True)
time.sleep(args.sleep)
if args.seed == args.fail_seed:
    print("RuntimeError: CUDA out of memory (fake)", file=sys.stderr)
    sys.exit(3)
os.makedirs(args.out, exist_ok=True)
with open(os.path.join(args.out, "results.json"), "w") as handle:
    json.dump({"task": "classification", "trainer": "Fake", "seed": args.seed, "accuracy": 50.0}, handle)
event("end")
"""


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    return tmp_path


def fake_spec(workspace: Path, seeds: list[int], sleep: float = 0.3, fail_seed: int = -1) -> dict:
    return {
        "trainer": ["A", "B"],
        "seed": seeds,
        "python": sys.executable,
        "script": str(workspace / "fake_train.py"),
        "events": str(workspace / "events.jsonl"),
        "output": str(workspace / "output" / "{trainer}" / "seed{seed}"),
        "command": "{python} {script} --out {output} --seed {seed} --events {events} "
                   f"--sleep {sleep} --fail-seed {fail_seed}",
    }


def read_events(workspace: Path) -> list[dict]:
    path = workspace / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def intervals(events: list[dict]) -> list[tuple[float, float, str]]:
    """(start, end, device) per finished job, matched by pid."""
    starts = {e["pid"]: e for e in events if e["kind"] == "start"}
    return [(starts[e["pid"]]["time"], e["time"], e["device"]) for e in events if e["kind"] == "end"]


# ---------------------------------------------------------------------------------------------- spec


def test_grid_is_the_cartesian_product_in_spec_order(workspace: Path):
    jobs = expand_grid(fake_spec(workspace, [1, 2, 3]))
    assert len(jobs) == 6
    assert [(job.params["trainer"], job.params["seed"]) for job in jobs[:4]] == [("A", 1), ("A", 2), ("A", 3), ("B", 1)]
    assert jobs[0].output == workspace / "output" / "A" / "seed1"
    assert f"--out {jobs[0].output}" in jobs[0].command and jobs[0].log_path.name == "sweep.log"


def test_spec_errors_name_the_fix():
    with pytest.raises(SpecError, match=r"--set data="):
        expand_grid({"seed": [1], "output": "out/seed{seed}", "command": "train --root {data}"})
    with pytest.raises(SpecError, match="two grid points write to"):
        expand_grid({"seed": [1, 2], "output": "out/same", "command": "train {seed}"})
    with pytest.raises(SpecError, match="'command'"):
        expand_grid({"seed": [1], "output": "out/{seed}"})


def test_overrides_add_constants_and_narrow_axes():
    overrides = parse_overrides(["data=/datasets", "seed=[2]", "shots=16"])
    assert overrides == {"data": "/datasets", "seed": [2], "shots": 16}
    spec = {"seed": [1, 2, 3], "output": "out/{shots}/seed{seed}", "command": "train --root {data} --seed {seed}"}
    (job,) = expand_grid(spec, overrides)
    assert job.command == "train --root /datasets --seed 2" and job.output == Path("out/16/seed2")


def test_values_with_spaces_are_shell_quoted():
    (job,) = expand_grid({"name": "my run", "output": "out/{name}", "command": "echo {name} > {output}.txt"})
    assert job.command == "echo 'my run' > 'out/my run'.txt"


# --------------------------------------------------------------------------------------------- local


def test_two_gpus_run_two_jobs_at_a_time_on_distinct_devices(workspace: Path):
    jobs = expand_grid(fake_spec(workspace, [1, 2, 3]))
    report = run_local(jobs, ["0", "1"], poll_seconds=0.02, progress=False)
    assert len(report.completed) == 6 and not report.failed and report.max_running == 2
    spans = intervals(read_events(workspace))
    assert len(spans) == 6 and {device for _, _, device in spans} == {"0", "1"}
    for i, (start, end, device) in enumerate(spans):
        overlapping = [other for j, other in enumerate(spans) if j != i and other[0] < end and start < other[1]]
        assert len(overlapping) <= 1  # never more than 2 jobs at once
        assert all(other[2] != device for other in overlapping)  # and never two on one GPU
    assert all((job.output / "results.json").is_file() for job in jobs)


def test_second_run_skips_finished_jobs(workspace: Path):
    jobs = expand_grid(fake_spec(workspace, [1, 2], sleep=0.0))
    run_local(jobs[:2], ["0", "1"], poll_seconds=0.02, progress=False)
    starts_before = len([e for e in read_events(workspace) if e["kind"] == "start"])
    report = run_local(jobs, ["0", "1"], poll_seconds=0.02, progress=False)
    assert [job.output for job in report.skipped] == [jobs[0].output, jobs[1].output]
    assert len(report.completed) == 2
    assert len([e for e in read_events(workspace) if e["kind"] == "start"]) == starts_before + 2


def test_failing_job_is_listed_with_its_log(workspace: Path, capsys):
    spec_path = workspace / "spec.json"
    spec_path.write_text(json.dumps(fake_spec(workspace, [1, 2], sleep=0.0, fail_seed=2)))
    assert sweep.main([str(spec_path), "--gpus", "0,1", "--poll", "0.02", "--no-progress"]) == 1
    printed = capsys.readouterr().out
    failed_log = workspace / "output" / "A" / "seed2" / "sweep.log"
    assert "2 finished, 2 failed" in printed and f"log: {failed_log}" in printed and "exit code 3" in printed
    assert "CUDA out of memory (fake)" in failed_log.read_text()  # stderr is captured too
    assert not (failed_log.parent / "results.json").exists()


def test_cpu_only_runs_jobs_one_after_another_without_gpus(workspace: Path):
    jobs = expand_grid(fake_spec(workspace, [1], sleep=0.05))
    report = run_local(jobs, [], poll_seconds=0.02, progress=False)
    assert len(report.completed) == 2 and report.max_running == 1
    assert {e["device"] for e in read_events(workspace)} == {""}


def test_dry_run_prints_commands_and_runs_nothing(workspace: Path, capsys):
    spec_path = workspace / "spec.yaml"
    spec_path.write_text(json.dumps(fake_spec(workspace, [1, 2])))  # JSON is valid YAML
    assert sweep.main([str(spec_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# 4 jobs, 0 already done (skipped); executor: local"
    assert len(lines) == 5 and all("fake_train.py" in line for line in lines[1:])
    assert not (workspace / "output").exists() and not read_events(workspace)


def test_dry_run_into_a_closed_pipe_ends_quietly(workspace: Path):
    """`sweep --dry-run | head -1`: the reader leaves early; no BrokenPipeError traceback, exit 0."""
    spec_path = workspace / "spec.yaml"
    spec_path.write_text(json.dumps(fake_spec(workspace, list(range(2000)))))  # more than a pipe buffer holds
    proc = subprocess.Popen([sys.executable, "-m", "tools.sweep", str(spec_path), "--dry-run"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and first.startswith(b"# 4000 jobs"), stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_devices_come_from_gpus_flag_then_parent_mask(monkeypatch):
    assert sweep.detect_devices("0, 1,3") == ["0", "1", "3"]
    assert sweep.detect_devices("") == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert sweep.detect_devices(None) == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep.detect_devices(None) == []


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (a zombie has already stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_stops_running_jobs(workspace: Path):
    spec_path = workspace / "spec.json"
    spec_path.write_text(json.dumps(fake_spec(workspace, [1, 2], sleep=60.0)))
    runner = subprocess.Popen(
        [sys.executable, "-m", "tools.sweep", str(spec_path), "--gpus", "0,1", "--poll", "0.05", "--no-progress"],
        cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # as if started from the repository root
    )
    deadline = time.monotonic() + 20
    while len([e for e in read_events(workspace) if e["kind"] == "start"]) < 2:
        if runner.poll() is not None:
            pytest.fail(f"the sweep exited early:\n{runner.stdout.read()}")
        assert time.monotonic() < deadline, "the fake jobs did not start"
        time.sleep(0.05)
    pids = [e["pid"] for e in read_events(workspace)]
    runner.send_signal(signal.SIGINT)
    output, _ = runner.communicate(timeout=20)
    assert runner.returncode == sweep.INTERRUPTED_EXIT_CODE, output
    assert "not started (interrupted)" in output and "interrupted" in output
    assert not any(_alive(pid) for pid in pids)


# ------------------------------------------------------------------------------------ submitit executors


@pytest.fixture()
def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``sbatch`` and ``srun`` on PATH that accept a submission without a cluster; sbatch keeps a copy of it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/bash\ncp "$1" {tmp_path / "submitted.sh"}\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "submitted.sh"


def test_slurm_executor_submits_one_array_through_submitit(workspace: Path, fake_slurm: Path, capsys):
    spec_path = workspace / "spec.json"
    spec_path.write_text(json.dumps(fake_spec(workspace, [1, 2])))
    assert sweep.main([str(spec_path), "--executor", "slurm", "--partition", "gpu", "--timeout", "30",
                       "--slurm-folder", str(workspace / "slurm")]) == 0
    assert "Submitted 4 job(s) to SLURM (0 already done): 4242_0 4242_1 4242_2 4242_3" in capsys.readouterr().out
    sbatch = fake_slurm.read_text()
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --partition=gpu", "#SBATCH --time=30", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --job-name=sweep"):
        assert line in sbatch
    assert "-m submitit.core._submit" in sbatch
    assert not read_events(workspace)  # submitted, not run here


def test_slurm_executor_without_slurm_fails_and_runs_nothing(workspace: Path, tmp_path: Path, monkeypatch, capsys):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no sbatch, no srun
    spec_path = workspace / "spec.json"
    spec_path.write_text(json.dumps(fake_spec(workspace, [1])))
    for flags in (["--executor", "slurm"], ["--slurm"]):
        assert sweep.main([str(spec_path), *flags, "--slurm-folder", str(workspace / "slurm")]) == 2
        captured = capsys.readouterr()
        assert "sbatch is not on PATH" in captured.err and "nothing was run" in captured.err
        assert "Submitted" not in captured.out
    assert not read_events(workspace) and not (workspace / "output").exists()


def test_slurm_dry_run_prints_the_sbatch_file_and_commands(workspace: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # a dry run needs no SLURM
    spec_path = workspace / "spec.json"
    spec_path.write_text(json.dumps(fake_spec(workspace, [1, 2])))
    assert sweep.main([str(spec_path), "--executor", "slurm", "--dry-run", "--partition", "gpu", "--mem-gb", "32",
                       "--array-parallelism", "2", "--slurm-folder", str(workspace / "slurm")]) == 0
    printed = capsys.readouterr().out
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --mem=32GB", "#SBATCH --time=240"):
        assert line in printed
    jobs = expand_grid(fake_spec(workspace, [1, 2]))
    assert all(f"# task {i}: mkdir -p {job.output} && {{ {job.command} ; }}" in printed for i, job in enumerate(jobs))
    assert not read_events(workspace) and not (workspace / "slurm").exists()
    # a relative folder is named as submitit submits it: absolute, in the srun line too
    preview = sweep.sbatch_preview(jobs, Path("output/slurm"))
    assert f"-m submitit.core._submit {Path.cwd() / 'output' / 'slurm'}\n" in preview


def test_debug_executor_runs_the_slurm_payloads_here(workspace: Path, capsys):
    spec_path = workspace / "spec.json"
    spec_path.write_text(json.dumps(fake_spec(workspace, [1, 2], sleep=0.0, fail_seed=2)))
    assert sweep.main([str(spec_path), "--executor", "debug", "--slurm-folder", str(workspace / "slurm")]) == 1
    printed = capsys.readouterr().out
    assert "through submitit's DebugExecutor" in printed and "2 finished, 2 failed" in printed
    ok_log = workspace / "output" / "A" / "seed1" / "sweep.log"
    failed_log = workspace / "output" / "B" / "seed2" / "sweep.log"
    assert "training seed 1 on '<unset>'" in ok_log.read_text()  # the job's stdout, through the payload's redirect
    assert "CUDA out of memory (fake)" in failed_log.read_text() and f"log: {failed_log}" in printed
    assert "exit code 3" in printed
    assert (ok_log.parent / "results.json").is_file() and not (failed_log.parent / "results.json").exists()
    starts = [e for e in read_events(workspace) if e["kind"] == "start"]
    assert len(starts) == 4
    # a second call skips what finished
    assert sweep.main([str(spec_path), "--executor", "debug", "--slurm-folder", str(workspace / "slurm")]) == 1
    assert "2 skipped" in capsys.readouterr().out


def test_submitit_executors_without_submitit_say_how_to_install(workspace: Path, monkeypatch):
    for module in ("submitit", "submitit.slurm", "submitit.slurm.slurm"):  # even if an earlier test imported them
        monkeypatch.setitem(sys.modules, module, None)  # makes `import submitit` raise ImportError
    with pytest.raises(sweep.ExecutorUnavailable, match="pip install submitit"):
        sweep.submit_slurm(expand_grid(fake_spec(workspace, [1])), workspace / "slurm")
    with pytest.raises(sweep.ExecutorUnavailable, match="pip install submitit"):
        sweep.run_debug(expand_grid(fake_spec(workspace, [1])), workspace / "slurm")
    with pytest.raises(sweep.ExecutorUnavailable, match="pip install submitit"):  # --dry-run too
        sweep.sbatch_preview(expand_grid(fake_spec(workspace, [1])), workspace / "slurm")


# ------------------------------------------------------------------------------------------ make tune


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_tune_keeps_each_data_roots_runs_apart(tmp_path: Path):
    """make tune's sweeps write (and skip finished runs) under a folder of their data root, which parse_results reads."""
    def planned(data: Path) -> tuple[list[sweep.Job], str]:
        printed = subprocess.run(["make", "-n", "tune", f"DATA={data}", "PYTHON=/opt/py/bin/python"], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout  # -n: prints, runs nothing
        overrides = parse_overrides(re.findall(r"--set (\S+)", printed))
        jobs = [job for spec in sorted((ROOT / "tools/demo/tuning").glob("*.yaml"))
                for job in expand_grid(sweep.load_spec(spec), overrides)]
        (summary,) = re.findall(r"-m tools\.parse_results (\S+)", printed)
        return jobs, summary

    first, first_summary = planned(tmp_path / "a" / "data")
    second, second_summary = planned(tmp_path / "b" / "data")
    assert first and first_summary != second_summary
    for jobs, summary, data in ((first, first_summary, tmp_path / "a" / "data"),
                                (second, second_summary, tmp_path / "b" / "data")):
        assert all(job.output.is_relative_to(summary) for job in jobs)
        assert all(job.command.startswith("/opt/py/bin/python train.py") and f"--root {data} " in job.command
                   for job in jobs)
