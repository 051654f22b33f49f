"""Time per training epoch and peak memory of methods on a dataset, each method in a fresh process.

    python benchmarks/epoch_time.py --dataset amazon --methods lightgcn --epochs 10

Prints a markdown table with the reference implementation's numbers (config/reference_numbers.yaml) and the
ratio where they exist. The dataset must be prepared (``recrepro fetch`` + ``recrepro prepare``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def measure(method: str, dataset: str, epochs: int, device: str, overrides: list[str]) -> dict:
    """Train ``epochs`` epochs (validating only at epoch 0) in this process; returns timing and memory."""
    import recrepro  # noqa: F401
    from recrepro.config import parse_overrides, resolve_config
    from recrepro.data.canonical import load_canonical
    from recrepro.data.cards import load_card
    from recrepro.inputs import load_extra
    from recrepro.paths import canonical_dir
    from recrepro.trainer import train_run

    sections = parse_overrides(overrides)
    sections["train"].update(max_epochs=epochs, test_step=10**9, patience=10**9)
    config = resolve_config(method, dataset, device=device, overrides=sections)
    data = load_canonical(canonical_dir(dataset), load_card(dataset))
    record = train_run(config, data, extras_loader=load_extra, evaluate_test=False, progress=False).record
    return {key: record[key] for key in ("seconds_per_epoch", "seconds_per_validation", "peak_rss_mb",
                                          "n_parameters", "device") if key in record} | {
        "peak_cuda_mb": record.get("peak_cuda_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--methods", nargs="+", default=["lightgcn"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], help="override, applied to every method")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.child, args.dataset, args.epochs, args.device, args.set)))
        return

    reference = yaml.safe_load((REPO / "config" / "reference_numbers.yaml").read_text())
    rows = {}
    for method in args.methods:
        cmd = [sys.executable, __file__, "--child", method, "--dataset", args.dataset, "--epochs", str(args.epochs),
               "--device", args.device] + [f"--set={item}" for item in args.set]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
        rows[method] = json.loads(proc.stdout.strip().splitlines()[-1])

    print(f"dataset {args.dataset}, {args.epochs} epochs, device {args.device}\n")
    print("| method | s/epoch (train) | s/validation | peak RSS (MB) | peak CUDA (MB) | reference s/epoch | "
          "speed-up | reference peak (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for method, row in rows.items():
        ref = reference.get(method, {}).get(args.dataset, {})
        ref_time, ref_mem = ref.get("seconds_per_epoch"), ref.get("peak_rss_mb")
        speedup = f"{ref_time / row['seconds_per_epoch']:.1f}x" if ref_time else "–"
        cuda = f"{row['peak_cuda_mb']:.0f}" if row.get("peak_cuda_mb") else "–"
        print(f"| {method} | {row['seconds_per_epoch']:.3f} | {row['seconds_per_validation']:.3f} | "
              f"{row['peak_rss_mb']:.0f} | {cuda} | {ref_time or '–'} | {speedup} | {ref_mem or '–'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
