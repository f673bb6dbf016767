"""Run a grid of training jobs on one machine's GPUs (one job per GPU at a time), or submit it to SLURM.

Usage:
    python -m tools.sweep tools/sweep_example.yaml --set data=/path/to/DATA [--gpus 0,1,3] [--dry-run]
    python -m tools.sweep tools/sweep_example.yaml --set data=/path/to/DATA --executor slurm --partition gpu \
        [--timeout 240] [--dry-run]
    python -m tools.sweep tools/sweep_example.yaml --set data=/path/to/DATA --executor debug

Executors: ``local`` (default) runs the grid on this machine, one job per GPU; ``slurm`` submits it as one
array through submitit's SlurmExecutor and fails with a message where there is no SLURM (it never runs the
jobs here instead); ``debug`` runs the very payloads a SLURM task would run through submitit's
DebugExecutor, here, one after another. ``--dry-run`` prints the commands, and for slurm the sbatch file.

The spec (YAML or JSON) is a mapping: every list is a grid axis, every scalar a constant, and the two
templates ``command`` and ``output`` are filled with them (``{output}`` is available in ``command``).
The grid is the cartesian product of the axes, in the spec's key order.

Why a runner of our own rather than shell loops: a job whose output folder already has ``results.json`` is
skipped, so a sweep can be re-run after a crash or a pre-emption; each job's stdout and stderr go to
``<output>/sweep.log`` (Dassl's log.txt misses tracebacks); failures are listed with that log at the end;
and Ctrl-C (or SIGTERM) stops the running jobs' whole process groups instead of leaving orphans on the GPUs.
Without GPUs the jobs run one after another on the CPU (``CUDA_VISIBLE_DEVICES=""``).
"""
from __future__ import annotations

import argparse
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping, Sequence


if not __package__:  # started as a file: the imports below need the repository root, as `python -m` gives
    print("error: run this tool from the repository root as a module: python -m tools.sweep ...", file=sys.stderr)
    sys.exit(2)

import yaml
from tqdm import tqdm

from tools.results import RESULTS_FILE, SWEEP_LOG_FILE

TEMPLATE_KEYS = ("command", "output")
CPU_DEVICE = ""  # the value of CUDA_VISIBLE_DEVICES that hides every GPU
INTERRUPTED_EXIT_CODE = 130


class SpecError(ValueError):
    """The sweep spec cannot be expanded; the message says what to fix."""


@dataclass(frozen=True)
class Job:
    """One grid point: its parameters, the filled-in command and its output folder."""

    index: int
    params: Mapping[str, Any]
    command: str
    output: Path

    @property
    def log_path(self) -> Path:
        return self.output / SWEEP_LOG_FILE

    def is_done(self) -> bool:
        return (self.output / RESULTS_FILE).is_file()


@dataclass(frozen=True)
class JobOutcome:
    job: Job
    device: str
    returncode: int | None
    seconds: float
    reason: str = ""  # empty when the job succeeded

    @property
    def ok(self) -> bool:
        return not self.reason


@dataclass
class SweepReport:
    completed: list[JobOutcome] = field(default_factory=list)
    failed: list[JobOutcome] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)  # already had results.json
    not_started: list[Job] = field(default_factory=list)  # left over after an interrupt
    interrupted: bool = False
    max_running: int = 0


# ------------------------------------------------------------------------------------------------ spec


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON spec (JSON is valid YAML)."""
    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: a sweep spec must be a mapping of keys to values or lists")
    return spec


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML, so ``seed=[1]`` narrows an axis and ``shots=16`` is an int."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--set expects key=value, got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value) if value else ""
    return overrides


def expand_grid(spec: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> list[Job]:
    """The cartesian product of the spec's list values, one Job per point, in the spec's key order."""
    spec = {**spec, **(overrides or {})}
    for key in TEMPLATE_KEYS:
        if not isinstance(spec.get(key), str):
            raise SpecError(f"the spec needs a {key!r} template (a string)")
    axes = [key for key, value in spec.items() if isinstance(value, list) and key not in TEMPLATE_KEYS]
    for axis in axes:
        if not spec[axis]:
            raise SpecError(f"grid axis {axis!r} is an empty list")
    constants = {key: value for key, value in spec.items() if key not in axes and key not in TEMPLATE_KEYS}

    jobs: list[Job] = []
    seen: dict[Path, Job] = {}
    for index, point in enumerate(itertools.product(*(spec[axis] for axis in axes))):
        params = {**constants, **dict(zip(axes, point))}
        output = _fill(spec["output"], params, "output")
        quoted = {key: shlex.quote(str(value)) for key, value in {**params, "output": output}.items()}
        job = Job(index, params, _fill(spec["command"], quoted, "command"), Path(output))
        if job.output in seen:
            raise SpecError(
                f"two grid points write to {job.output}: {dict(seen[job.output].params)} and {params}; "
                "put every axis in the output template"
            )
        seen[job.output] = job
        jobs.append(job)
    return jobs


def _fill(template: str, values: Mapping[str, Any], what: str) -> str:
    try:
        return template.format_map(values)
    except KeyError as error:
        name = error.args[0]
        raise SpecError(
            f"the {what} template uses {{{name}}} but the spec defines no {name!r}: "
            f"add it to the spec or pass --set {name}=..."
        ) from None


# ----------------------------------------------------------------------------------------------- local


def detect_devices(requested: str | None) -> list[str]:
    """GPU ids to schedule on: ``--gpus`` if given, else the parent's CUDA_VISIBLE_DEVICES, else all torch sees.

    The parent's mask is kept because torch's indices are relative to it: on a machine where we may use
    GPUs 2 and 3, a job must get CUDA_VISIBLE_DEVICES=2, not 0. An empty list means: CPU only.
    """
    if requested is not None:
        return [gpu.strip() for gpu in requested.split(",") if gpu.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip() and not gpu.strip().startswith("-")]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass
class _RunningJob:
    job: Job
    device: str
    process: subprocess.Popen
    log: IO[str]
    started: float

    def close(self, reason: str) -> JobOutcome:
        seconds = time.monotonic() - self.started
        returncode = self.process.returncode
        self.log.write(f"\n=== sweep: {reason or 'finished'} (exit code {returncode}) after {seconds:.0f}s\n")
        self.log.close()
        return JobOutcome(self.job, self.device, returncode, seconds, reason)


def _launch(job: Job, device: str) -> _RunningJob:
    job.output.mkdir(parents=True, exist_ok=True)
    log = job.log_path.open("a")
    log.write(f"=== sweep {time.strftime('%Y-%m-%d %H:%M:%S')}: CUDA_VISIBLE_DEVICES={device!r}\n$ {job.command}\n")
    log.flush()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": device, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        job.command,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group, so stopping it also stops its dataloader workers
    )
    return _RunningJob(job, device, process, log, time.monotonic())


def _failure_reason(job: Job, returncode: int) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode}"
    if returncode != 0:
        return f"exit code {returncode}"
    if not job.is_done():
        return f"exited 0 but wrote no {RESULTS_FILE}"
    return ""


def _stop(running: Sequence[_RunningJob], grace_seconds: float) -> None:
    """SIGTERM every job's process group, then SIGKILL whatever is still alive after ``grace_seconds``."""
    for item in running:
        _signal_group(item.process, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    try:
        for item in running:
            try:
                item.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stop waiting and kill now
    for item in running:
        _signal_group(item.process, signal.SIGKILL)  # also reaches children that outlived their shell
        item.process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def run_local(
    jobs: Sequence[Job],
    devices: Sequence[str],
    poll_seconds: float = 0.5,
    progress: bool = True,
    grace_seconds: float = 10.0,
) -> SweepReport:
    """Run the jobs that are not done yet, one per device at a time (one at a time on the CPU without devices)."""
    report = SweepReport(skipped=[job for job in jobs if job.is_done()])
    pending = deque(job for job in jobs if not job.is_done())
    free = deque(devices or [CPU_DEVICE])
    running: list[_RunningJob] = []
    bar = tqdm(total=len(pending), unit="job", desc="sweep", disable=not progress, dynamic_ncols=True)
    try:
        while pending or running:
            while pending and free:
                running.append(_launch(pending.popleft(), free.popleft()))
            report.max_running = max(report.max_running, len(running))
            bar.set_postfix(running=len(running), failed=len(report.failed))
            time.sleep(poll_seconds)
            for item in [item for item in running if item.process.poll() is not None]:
                running.remove(item)
                free.append(item.device)
                outcome = item.close(_failure_reason(item.job, item.process.returncode))
                (report.completed if outcome.ok else report.failed).append(outcome)
                if not outcome.ok:
                    bar.write(f"FAILED ({outcome.reason}): {item.job.output}  log: {item.job.log_path}")
                bar.update(1)
    except KeyboardInterrupt:
        report.interrupted = True
        bar.write(f"Interrupted: stopping {len(running)} running job(s)...")
        _stop(running, grace_seconds)
        report.failed += [item.close("interrupted") for item in running]
        report.not_started = list(pending)
    except BaseException:
        _stop(running, grace_seconds)
        for item in running:
            item.close("sweep runner crashed")
        raise
    finally:
        bar.close()
    return report


def summarise(report: SweepReport) -> str:
    lines = [
        f"Sweep: {len(report.completed)} finished, {len(report.failed)} failed, "
        f"{len(report.skipped)} skipped (already had {RESULTS_FILE})"
        + (f", {len(report.not_started)} not started (interrupted)" if report.interrupted else "")
        + "."
    ]
    if report.failed:
        lines.append("Failed jobs:")
        lines += [f"  {o.job.output}: {o.reason}; log: {o.job.log_path}" for o in report.failed]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- submitit executors

EXECUTORS = ("local", "slurm", "debug")


class ExecutorUnavailable(RuntimeError):
    """The chosen executor cannot run here (no submitit, no SLURM); the message says what to do instead."""


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch parameters, by SLURM's names (submitit's SlurmExecutor takes them as they are)."""

    partition: str | None = None
    timeout_min: int = 240
    gpus_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    array_parallelism: int | None = None

    def parameters(self) -> dict[str, Any]:
        values = {"job_name": "sweep", "time": self.timeout_min, "gpus_per_node": self.gpus_per_node,
                  "partition": self.partition, "cpus_per_task": self.cpus_per_task,
                  "mem": f"{self.mem_gb}GB" if self.mem_gb is not None else None,
                  "array_parallelism": self.array_parallelism}
        return {key: value for key, value in values.items() if value is not None}


def _submitit():
    try:
        import submitit
        from submitit.helpers import CommandFunction
    except ImportError as error:
        raise ExecutorUnavailable("the slurm and debug executors need the submitit package: pip install submitit"
                                  ) from error
    return submitit, CommandFunction


def _payloads(jobs: Sequence[Job]) -> list:
    """One callable per job: the same shell command as locally, from this directory, logging to sweep.log."""
    _, command_function = _submitit()
    cwd = os.getcwd()
    return [command_function(["bash", "-c", _logged_shell_command(job)], verbose=False, cwd=cwd) for job in jobs]


def _logged_shell_command(job: Job) -> str:
    output, log = shlex.quote(str(job.output)), shlex.quote(str(job.log_path))
    return f"mkdir -p {output} && {{ {job.command} ; }} >> {log} 2>&1"


def submit_slurm(jobs: Sequence[Job], folder: Path, options: SlurmOptions = SlurmOptions()) -> list[str]:
    """Submit the jobs to SLURM as one array through submitit's SlurmExecutor; return the job ids.

    Never falls back to running here: without ``sbatch`` (or submitit's ``srun`` check) it raises
    ExecutorUnavailable and nothing is submitted.
    """
    submitit, _ = _submitit()
    if shutil.which("sbatch") is None:
        raise ExecutorUnavailable(
            "--executor slurm: sbatch is not on PATH, so this machine cannot submit to SLURM and nothing was run. "
            "Run the sweep on the cluster's login node, use --executor local for this machine's GPUs, or add "
            "--dry-run to see the sbatch parameters and commands.")
    try:
        executor = submitit.SlurmExecutor(folder=str(folder))
    except RuntimeError as error:  # submitit's own check (srun)
        raise ExecutorUnavailable(f"--executor slurm: {error}; nothing was submitted.") from error
    executor.update_parameters(**options.parameters())
    payloads = _payloads(jobs)
    with executor.batch():
        submitted = [executor.submit(payload) for payload in payloads]
    return [str(job.job_id) for job in submitted]


def sbatch_preview(jobs: Sequence[Job], folder: Path, options: SlurmOptions = SlurmOptions()) -> str:
    """The sbatch file submitit would write for these jobs (one array), and each task's command."""
    _submitit()  # before the private import below: without submitit, the message that says how to install it
    from submitit.slurm.slurm import _make_sbatch_string  # the text SlurmExecutor submits

    folder = Path(folder).expanduser().absolute()  # as submitit's Executor stores it, so the srun line matches
    runner = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    parameters = options.parameters()
    if len(jobs) > 1:
        parameters["map_count"] = len(jobs)
    text = _make_sbatch_string(command=runner, folder=str(folder), **parameters)
    tasks = [f"# task {i}: {_logged_shell_command(job)}" for i, job in enumerate(jobs)]
    return text.rstrip() + "\n\n# each array task runs one command (from this directory):\n" + "\n".join(tasks)


def run_debug(jobs: Sequence[Job], folder: Path) -> SweepReport:
    """Run the jobs through submitit's DebugExecutor: the same payloads as on SLURM, here, one after another."""
    submitit, _ = _submitit()
    report = SweepReport(skipped=[job for job in jobs if job.is_done()])
    todo = [job for job in jobs if not job.is_done()]
    executor = submitit.DebugExecutor(folder=str(folder))
    with executor.batch():
        submitted = [executor.submit(payload) for payload in _payloads(todo)]
    report.max_running = 1 if todo else 0
    for job, handle in zip(todo, submitted):
        started = time.monotonic()
        error = handle.exception()  # runs it; unlike result(), never opens a debugger on failure
        seconds = time.monotonic() - started
        if error is None:
            outcome = JobOutcome(job, "debug", 0, seconds, _failure_reason(job, 0))
        else:  # CommandFunction raises FailedJobError from the CalledProcessError that has the exit code
            returncode = getattr(error.__cause__, "returncode", None)
            reason = f"exit code {returncode}" if returncode is not None else f"failed: {error}"
            outcome = JobOutcome(job, "debug", returncode, seconds, reason)
        (report.completed if outcome.ok else report.failed).append(outcome)
    return report


# ------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="YAML or JSON sweep spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override or add a spec key (YAML value: --set data=/data --set 'seed=[1]')")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: this machine's GPUs, one job per GPU (default); slurm: submit an array with "
                             "submitit (fails where there is no SLURM); debug: submitit's DebugExecutor, the SLURM "
                             "payloads run here one after another")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands (and, for slurm, the sbatch parameters) and exit")
    parser.add_argument("--gpus", help="local: comma-separated GPU ids (default: CUDA_VISIBLE_DEVICES, "
                                       "else all that torch sees; '' = CPU only)")
    parser.add_argument("--poll", type=float, default=0.5, help="local: seconds between checks of the running jobs")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (e.g. in CI logs)")
    slurm = parser.add_argument_group("SLURM (through submitit)")
    slurm.add_argument("--slurm", dest="executor", action="store_const", const="slurm",
                       help="the same as --executor slurm")
    slurm.add_argument("--partition")
    slurm.add_argument("--timeout", type=int, default=240, help="minutes per job")
    slurm.add_argument("--gpus-per-node", type=int, default=1)
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--mem-gb", type=int)
    slurm.add_argument("--array-parallelism", type=int, help="most array tasks running at once")
    slurm.add_argument("--slurm-folder", type=Path, default=Path("output/slurm"),
                       help="submitit's logs and pickles (slurm and debug executors)")
    return parser


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        jobs = expand_grid(load_spec(args.spec), parse_overrides(args.overrides))
    except (SpecError, OSError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    todo = [job for job in jobs if not job.is_done()]
    options = SlurmOptions(args.partition, args.timeout, args.gpus_per_node, args.cpus_per_task, args.mem_gb,
                           args.array_parallelism)
    try:
        if args.dry_run:
            try:
                print(f"# {len(jobs)} jobs, {len(jobs) - len(todo)} already done (skipped); executor: {args.executor}")
                if args.executor == "slurm":
                    print(sbatch_preview(todo, args.slurm_folder, options) if todo else "# nothing to submit")
                else:
                    for job in jobs:
                        print(f"# done: {job.output}" if job.is_done() else job.command)
                sys.stdout.flush()
            except BrokenPipeError:  # `--dry-run | head`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 0
        if args.executor == "slurm":
            ids = submit_slurm(todo, args.slurm_folder, options) if todo else []
            print(f"Submitted {len(ids)} job(s) to SLURM ({len(jobs) - len(todo)} already done): {' '.join(ids)}\n"
                  f"submitit logs in {args.slurm_folder}; each job's output in <output>/{SWEEP_LOG_FILE}")
            return 0
        if args.executor == "debug":
            print(f"{len(todo)} of {len(jobs)} jobs to run through submitit's DebugExecutor, one after another")
            report = run_debug(jobs, args.slurm_folder)
            print(summarise(report))
            return 1 if report.failed else 0
    except ExecutorUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    devices = detect_devices(args.gpus)
    print(f"{len(todo)} of {len(jobs)} jobs to run on " + (f"GPU(s) {','.join(devices)}" if devices else "the CPU"))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    report = run_local(jobs, devices, args.poll, progress=not args.no_progress)
    print(summarise(report))
    if report.interrupted:
        return INTERRUPTED_EXIT_CODE
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
