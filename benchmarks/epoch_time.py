"""Time per training epoch and peak memory of methods on a dataset, each method in a fresh process.

    python benchmarks/epoch_time.py --dataset amazon --methods lightgcn --epochs 10

Prints a markdown table with the reference implementation's numbers (config/reference_numbers.yaml) and the
ratio where they exist. The dataset must be prepared (``recrepro fetch`` + ``recrepro prepare``). ``--threads`` and
``--exclusive`` mean what they mean to ``recrepro``: ``--threads 2 --exclusive`` times a method as a job of
``snakemake --cores 2 --config threads=2`` runs (the fidelity runs), without ``--exclusive`` as one of several jobs
side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def synthetic_text(data, profile_dim: int, intent_dim: int):
    """Random stand-ins for the LLM stage's embeddings, at the reference's dimensions (timing only)."""
    import numpy as np

    from recrepro.inputs import TextEmbeddings

    rng = np.random.default_rng(0)
    arrays = {
        f"{kind}_{what}": rng.standard_normal((n, dim), dtype=np.float32)
        for kind, n in (("user", data.n_users), ("item", data.n_items))
        for what, dim in (("profile", profile_dim), ("intent", intent_dim))
    }
    manifest = {
        "model": "synthetic (random)",
        "embedding_model": "synthetic (random)",
        "embedding_dim": profile_dim,
        "checksums": {"embeddings.npz": "-" * 12},
    }
    return TextEmbeddings(**arrays, manifest=manifest)


def measure(
    method: str, dataset: str, epochs: int, device: str, overrides: list[str], text_dims: tuple[int, int] | None
) -> dict:
    """Train ``epochs`` epochs (validating only at epoch 0) in this process; returns timing and memory."""
    from functools import partial

    import recrepro  # noqa: F401
    from recrepro.config import parse_overrides, resolve_config
    from recrepro.data.canonical import load_canonical
    from recrepro.data.cards import load_card
    from recrepro.inputs import load_extra
    from recrepro.paths import canonical_dir, llm_dir
    from recrepro.trainer import train_run

    sections = parse_overrides(overrides)
    sections["train"].update(max_epochs=epochs, test_step=10**9, patience=10**9)
    config = resolve_config(method, dataset, device=device, overrides=sections)
    data = load_canonical(canonical_dir(dataset), load_card(dataset))
    loader = partial(load_extra, text_dir=llm_dir(dataset))
    if text_dims:
        text = synthetic_text(data, *text_dims)
        loader = partial(lambda name, d, real: text if name == "text" else real(name, d), real=loader)
    record = train_run(config, data, extras_loader=loader, evaluate_test=False, progress=False).record
    return {
        key: record[key]
        for key in ("seconds_per_epoch", "seconds_per_validation", "peak_rss_mb", "n_parameters", "device")
        if key in record
    } | {"peak_cuda_mb": record.get("peak_cuda_mb")}


def reference_timing(reference: dict, method: str, dataset: str) -> dict:
    """The official code's epoch time and memory for ``method`` on ``dataset`` at its faithful preset, as
    config/reference_numbers.yaml records them (empty where it has none)."""
    for entry in reference["comparisons"]:
        same = (entry["method"], entry["dataset"], entry.get("preset", "faithful")) == (method, dataset, "faithful")
        if same and entry.get("timing"):
            return entry["timing"]
    return {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--methods", nargs="+", default=["lightgcn"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], help="override, applied to every method")
    parser.add_argument(
        "--synthetic-text",
        metavar="PROFILE_DIM,INTENT_DIM",
        help="use random text embeddings of these sizes (e.g. 1536,3072, the reference's) instead of "
        "the LLM stage's outputs; for timing only",
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--exclusive", action="store_true", help="OpenMP's own wait policy, as `recrepro --exclusive`")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    text_dims = tuple(int(x) for x in args.synthetic_text.split(",")) if args.synthetic_text else None
    if args.child:
        from recrepro import runtime  # its import sets the runtime defaults; torch is not imported yet

        runtime.configure_job(args.threads, args.exclusive)
        row = measure(args.child, args.dataset, args.epochs, args.device, args.set, text_dims)
        print(json.dumps(row | {"wait_policy": runtime.settings()["omp_wait_policy"]}))
        return

    reference = yaml.safe_load((REPO / "config" / "reference_numbers.yaml").read_text())
    rows = {}
    for method in args.methods:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            method,
            "--dataset",
            args.dataset,
            "--epochs",
            str(args.epochs),
            "--device",
            args.device,
        ] + [f"--set={item}" for item in args.set]
        if args.synthetic_text:
            cmd += ["--synthetic-text", args.synthetic_text]
        cmd += ["--threads", str(args.threads)] * bool(args.threads) + ["--exclusive"] * args.exclusive
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
        rows[method] = json.loads(proc.stdout.strip().splitlines()[-1])

    text = f", random text embeddings of {args.synthetic_text} dimensions" if args.synthetic_text else ""
    policies = ", ".join(sorted({row["wait_policy"] for row in rows.values()}))
    threads = f"{args.threads or 'all'} threads, OpenMP wait policy {policies}"
    lines = [
        f"Epoch time and peak memory: dataset {args.dataset}, {args.epochs} epochs, device {args.device}, "
        f"{threads}{text}.",
        f"Command: `python benchmarks/epoch_time.py {' '.join(sys.argv[1:])}`",
        "",
        "| method | s/epoch (train) | s/validation | peak RSS (MB) | peak CUDA (MB) | reference s/epoch | "
        "speed-up | reference peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        ref = reference_timing(reference, method, args.dataset)
        ref_time, ref_mem = ref.get("reference_s_per_epoch"), ref.get("reference_peak_rss_mb")
        speedup = f"{ref_time / row['seconds_per_epoch']:.1f}x" if ref_time else "–"
        cuda = f"{row['peak_cuda_mb']:.0f}" if row.get("peak_cuda_mb") else "–"
        lines.append(
            f"| {method} | {row['seconds_per_epoch']:.3f} | {row['seconds_per_validation']:.3f} | "
            f"{row['peak_rss_mb']:.0f} | {cuda} | {ref_time or '–'} | {speedup} | {ref_mem or '–'} |"
        )
    print("\n".join(lines))
    if args.out:
        from recrepro.atomic import write_text

        write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
