"""Start-up of `humanseg predict one.jpg`: wall time and peak memory of a cold process per backend.

Each run is a fresh interpreter (`python -m humanseg.cli predict PHOTO`), as a script or a service
calls it; its wall time is measured around the whole process, its CPU time (user + system) and
peak resident memory are the child's own (`ru_utime + ru_stime`, `ru_maxrss`, from os.wait4). On
a loaded machine the wall time stretches with other people's work while the CPU time stays close
to what the process needs, so both are reported. Median of `--repeats` runs after one untimed
run (which warms the OS file cache and fills the ONNX cache), runs of the two code versions
interleaved so a shared machine's load falls on both alike. `--before_src` points at the `src/`
folder of the code to compare with (e.g. a `git worktree` of the previous commit); its label PNGs
are compared with the current code's, pixel by pixel.

Command lines: `default` (no backend option: the packaged model on each version's default
backend, `auto` = onnxruntime with its shipped ONNX file now, torch before), `torch` (the packaged
model, `--backend torch`), `onnxruntime` with an ONNX file exported once by `humanseg export` (the
same file for both versions), and `onnxruntime-cached` (a copy of the packaged `.pt` and config,
as a user's own model: exported into the cache by the untimed run, loaded from there by the timed
ones).

    OMP_NUM_THREADS=1 python benchmarks/bench_startup.py --photo one.jpg --before_src ../old/src
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO.parent / "shared" / "data" / "portraits" / "images" / "vs_100.jpg"
DEFAULT_CONFIG = REPO / "src" / "humanseg" / "weights" / "default.yml"
DEFAULT_MODEL = DEFAULT_CONFIG.with_name("default.pt")


def timed_run(src: Path, argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one `python -m humanseg.cli ARGV` with `src` first."""
    child_env = {**env, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "humanseg.cli", *argv], env=child_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{src}: humanseg {' '.join(argv)} failed: "
                         f"{process.stderr.read().decode()[-500:]}")
    process.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: kilobytes


COMMANDS = ("default", "torch", "onnxruntime", "onnxruntime-cached")


def predict_argv(command: str, photo: Path, work: Path, save_dir: Path) -> list[str]:
    """One of the `COMMANDS` (its files in `work`)."""
    argv = ["predict", str(photo), "--save_dir", str(save_dir)]
    if command == "torch":
        return [*argv, "--backend", "torch"]
    if command == "onnxruntime":
        return [*argv, "--backend", "onnxruntime", "--config", str(DEFAULT_CONFIG),
                "--model_path", str(work / "default.onnx")]
    if command == "onnxruntime-cached":
        return [*argv, "--backend", "onnxruntime", "--config", str(work / "mine.yml"),
                "--model_path", str(work / "mine.pt")]
    return argv


def main() -> None:
    """Time every (version, backend) pair and print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--before_src", type=Path, help="src/ of the code to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "XDG_CACHE_HOME": str(work / "cache")}
    versions = {"after": REPO / "src"}
    if args.before_src:
        versions["before"] = args.before_src.resolve()
    subprocess.run([sys.executable, "-m", "humanseg.cli", "export", "--output",
                    str(work / "default.onnx")],
                   env={**env, "PYTHONPATH": str(REPO / "src")}, check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copyfile(DEFAULT_CONFIG, work / "mine.yml")
    shutil.copyfile(DEFAULT_MODEL, work / "mine.pt")
    pairs = [(version, backend) for backend in COMMANDS for version in versions]
    samples: dict[tuple[str, str], list[tuple[float, ...]]] = {pair: [] for pair in pairs}
    for attempt in range(args.repeats + 1):
        for version, backend in pairs:
            save_dir = work / version / backend
            argv = predict_argv(backend, args.photo, work, save_dir)
            result = timed_run(versions[version], argv, env)
            if attempt:  # the first round is untimed
                samples[(version, backend)].append(result)
    report = {"photo": str(args.photo), "repeats": args.repeats, "runs": []}
    for (version, backend), results in samples.items():
        label = cv2.imread(str(work / version / backend / "label" / f"{args.photo.stem}.png"),
                           cv2.IMREAD_UNCHANGED)
        entry = {"version": version, "backend": backend,
                 "wall_s": round(statistics.median(r[0] for r in results), 3),
                 "cpu_s": round(statistics.median(r[1] for r in results), 3),
                 "peak_rss_mb": round(statistics.median(r[2] for r in results), 1)}
        reference = work / "before" / backend / "label"
        if version == "after" and reference.is_dir():
            before = cv2.imread(str(reference / f"{args.photo.stem}.png"), cv2.IMREAD_UNCHANGED)
            entry["label_pixels_equal_to_before"] = round(float(np.mean(before == label)), 6)
        report["runs"].append(entry)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
