"""Epoch time on an idle and on a busy machine, with OpenMP's default wait policy and with ``PASSIVE``.

    python benchmarks/thread_policy.py --dataset amazon --method lightgcn --epochs 5 --load 2 \\
        --out results/performance/thread-policy.md

"Busy" means ``--load`` other processes training the same method at the same time, as when Snakemake runs jobs
side by side. Every process uses ``--threads`` threads. With the default policy, idle OpenMP threads spin and
steal the cores the other processes need; with ``PASSIVE`` (the harness's default) they sleep. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

POLICIES = {"OpenMP default (threads spin)": "default", "PASSIVE (the harness's default)": "PASSIVE"}


def epoch_seconds(method: str, dataset: str, epochs: int, policy: str) -> float:
    """Train ``epochs`` epochs in this process (no validation); the mean training seconds per epoch."""
    import recrepro  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE unless it is set; torch is not imported yet)

    if policy == "default":
        os.environ.pop("OMP_WAIT_POLICY")  # OpenMP reads it when torch loads it, below
    else:
        os.environ["OMP_WAIT_POLICY"] = policy
    from recrepro.config import resolve_config
    from recrepro.data.canonical import load_canonical
    from recrepro.paths import canonical_dir
    from recrepro.trainer import train_run

    overrides = {"train": {"max_epochs": epochs, "test_step": 10**9, "patience": 10**9}}
    config = resolve_config(method, dataset, overrides=overrides)
    outcome = train_run(config, load_canonical(canonical_dir(dataset)), evaluate_test=False, progress=False)
    return outcome.record["seconds_per_epoch"]


def run(args: argparse.Namespace, policy: str, load: int) -> float:
    env = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    one = [sys.executable, __file__, "--one", "--policy", policy, "--dataset", args.dataset, "--method", args.method]
    background = [
        subprocess.Popen(
            one + ["--epochs", "1000"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(load)
    ]
    try:
        time.sleep(3 if load else 0)  # let the load start
        out = subprocess.run(one + ["--epochs", str(args.epochs)], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_epoch"]
    finally:
        for process in background:
            process.kill()
            process.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--method", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--load", type=int, default=2, help="other training processes on the busy machine")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=sorted(POLICIES.values()), default="PASSIVE", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.one:
        print(json.dumps({"seconds_per_epoch": epoch_seconds(args.method, args.dataset, args.epochs, args.policy)}))
        return
    rows = []
    for label, policy in POLICIES.items():
        idle, busy = run(args, policy, 0), run(args, policy, args.load)
        rows.append(f"| {label} | {idle:.3f} | {busy:.3f} | {busy / idle:.1f}x |")
        print(rows[-1], flush=True)
    text = (
        f"# Thread wait policy: {args.method} on {args.dataset}, {args.threads} thread(s) per process, "
        f"{os.cpu_count()} cores\n\nCommand: `python benchmarks/thread_policy.py {' '.join(sys.argv[1:])}`\n\n"
        f"| OpenMP wait policy | s/epoch idle | s/epoch with {args.load} other training processes | slow-down |\n"
        "|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if args.out:
        from recrepro.atomic import write_text

        write_text(args.out, text)


if __name__ == "__main__":
    main()
