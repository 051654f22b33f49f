"""Where a training step's time goes: milliseconds per step of each method and its most expensive operators.

    python benchmarks/profile_step.py --dataset ml-100k --threads 1 --out results/performance/profile-ml-100k.md

Each method is built at its reference configuration (text from the LLM stage, or ``--text``), trained for a few
warm-up steps, then timed over ``--steps`` steps of the trainer's batch size (forward, backward, Adam) and
profiled with the torch profiler over three more. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measure(method: str, dataset: str, steps: int, text: str | None, top: int, exclusive: bool) -> str:
    """One method in this process: a markdown section with ms/step and the top operators by self CPU time."""
    import time
    from functools import partial

    from recrepro import runtime

    runtime.configure_environment()  # before torch loads, as in training (OpenMP reads its settings then)
    runtime.configure_job(None, exclusive)
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    from recrepro.config import resolve_config
    from recrepro.data.canonical import load_canonical
    from recrepro.inputs import load_extra
    from recrepro.paths import canonical_dir, llm_dir
    from recrepro.sampling import NegativeSampler
    from recrepro.trainer import build_model

    config = resolve_config(method, dataset)
    data = load_canonical(canonical_dir(dataset))
    text_dir = text or str(llm_dir(dataset))
    model = build_model(config, data, torch.device("cpu"), partial(load_extra, text_dir=text_dir))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    sampler = NegativeSampler(data)
    rng = np.random.default_rng(0)
    users, items = torch.from_numpy(sampler.users), torch.from_numpy(sampler.items)
    negatives = torch.from_numpy(sampler.sample(rng))
    order = torch.from_numpy(rng.permutation(len(users)))
    batch = config.train.batch_size
    n_batches = max(len(users) // batch, 1)  # full batches, timed
    # the trainer's steps: the last, partial batch too unless the method drops it (KGIN, as its reference)
    steps_per_epoch = len(users) // batch if config.train.drop_last else -(-len(users) // batch)

    def step(k: int) -> None:
        idx = order[(k % n_batches) * batch : (k % n_batches + 1) * batch]
        terms = model.loss(users[idx], items[idx], negatives[idx])
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    model.train()
    for k in range(2):
        step(k)
    start = time.perf_counter()
    for k in range(steps):
        step(k)
    ms = (time.perf_counter() - start) / steps * 1000
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for k in range(3):
            step(k)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    lines = [
        f"### {method}: {ms:.1f} ms per step of {batch} "
        f"({steps_per_epoch} steps per epoch: {ms * steps_per_epoch / 1000:.2f} s)",
        "",
        "| operator | self CPU ms per step | share | calls per step |",
        "|---|---|---|---|",
    ]
    for e in rows:
        lines.append(
            f"| {e.key} | {e.self_cpu_time_total / 3000:.1f} | {e.self_cpu_time_total / total:.0%} | {e.count / 3:g} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--exclusive", action="store_true", help="as recrepro --exclusive: a job holding every core")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--text", help="LLM-stage or stand-in folder (default resources/llm/<dataset>)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.one:
        print(measure(args.one, args.dataset, args.steps, args.text, args.top, args.exclusive))
        return
    if args.methods is None:
        sys.path.insert(0, str(REPO))
        from recrepro.registry import list_methods

        args.methods = list_methods()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    sections = []
    for method in args.methods:  # each in a fresh process: no warm caches, no shared allocator state
        cmd = [sys.executable, __file__, "--one", method, "--dataset", args.dataset, "--steps", str(args.steps)]
        cmd += ["--top", str(args.top)] + (["--text", args.text] if args.text else [])
        cmd += ["--exclusive"] if args.exclusive else []
        sections.append(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
        print(sections[-1], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python", "benchmarks/profile_step.py", *sys.argv[1:]])
        args.out.write_text(
            f"# Where a training step's time goes: {args.dataset}, {args.threads} thread(s), CPU\n\n"
            f"Command: `{command}`\n\n" + "\n".join(sections)
        )


if __name__ == "__main__":
    main()
