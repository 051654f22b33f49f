"""Command-line entry point: ``recrepro <command>``; ``recrepro <command> --help`` for details.

Examples::

    recrepro fetch amazon --mirror /data/irllrec-mirror
    recrepro prepare amazon
    recrepro train --method lightgcn --dataset amazon --seed 2023 --device cpu
    recrepro train --method lightgcn --dataset ml-100k --set model.layers=3 --set train.lr=5e-4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

import recrepro  # noqa: F401  (sets runtime defaults before heavy imports)
from recrepro import paths
from recrepro.atomic import write_text
from recrepro.runtime import configure_job

log = logging.getLogger("recrepro")


def _dataset(args: argparse.Namespace):
    """(card, canonical data) of ``args.dataset``, from ``args.data`` or the default folder."""
    from recrepro.data.canonical import load_canonical
    from recrepro.data.cards import load_card

    card = load_card(args.dataset)
    return card, load_canonical(Path(args.data or paths.canonical_dir(args.dataset)), card)


def _text_dir(args: argparse.Namespace) -> Path:
    return Path(args.text) if args.text else paths.llm_dir(args.dataset)


def _cmd_fetch(args: argparse.Namespace) -> None:
    from recrepro.data.cards import load_card
    from recrepro.data.fetch import fetch_files

    card = load_card(args.dataset)
    files = card.text.files if args.text else card.files
    if args.text and not files:
        raise ValueError(f"{card.name} has no text source to fetch ({card.text.reason.strip()})")
    dest = Path(args.dest or (paths.raw_dir(card.name) / "text" if args.text else paths.raw_dir(card.name)))
    verified = fetch_files(files, dest, card.name, mirror=args.mirror, retries=args.retries)
    manifest = {path.name: spec.sha256 for path, spec in zip(verified, files)}
    write_text(dest / "verified.json", json.dumps(manifest, indent=1) + "\n")
    print(f"verified {len(verified)} file(s) of {card.name} in {dest}")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from recrepro.data.cards import load_card
    from recrepro.data.convert import prepare

    card = load_card(args.dataset)
    data = prepare(card, Path(args.raw or paths.raw_dir(card.name)), Path(args.out or paths.canonical_dir(card.name)))
    print(f"prepared {card.name}: {data.stats()} (sha256 {data.checksum})")


def _cmd_train(args: argparse.Namespace) -> None:
    from recrepro.config import parse_overrides, resolve_config
    from recrepro.inputs import load_extra
    from recrepro.results import write_run
    from recrepro.trainer import train_run

    overrides, tuning = parse_overrides(args.set), None
    if args.params:
        from recrepro.config import merge_overrides, read_best_summary

        tuning = read_best_summary(Path(args.params))
        overrides = merge_overrides(tuning.pop("overrides"), overrides)
    config = resolve_config(
        args.method, args.dataset, seed=args.seed, device=args.device, preset=args.preset, overrides=overrides
    )
    _, data = _dataset(args)
    for deviation in config.deviations:
        log.info("deviation: %s", deviation)
    out = Path(args.out) if args.out else paths.run_record(args.dataset, args.variant or args.method, args.seed)
    checkpoint = out.with_suffix(".ckpt") if args.resume else None
    outcome = train_run(
        config, data, checkpoint=checkpoint, extras_loader=partial(load_extra, text_dir=_text_dir(args))
    )
    outcome.record["variant"] = args.variant or args.method
    outcome.record["tuning"] = tuning and {"file": args.params, **tuning}
    write_run(outcome, out)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    print(
        json.dumps(
            {"record": str(out), "best_epoch": outcome.record["best_epoch"], "test": outcome.record["metrics"]["test"]},
            indent=1,
        )
    )


def _llm_options(args: argparse.Namespace) -> tuple:
    from recrepro.llm.client import LLMSettings

    options = json.loads(args.settings) if args.settings else {}
    max_failure_fraction = options.pop("max_failure_fraction", 0.0)
    use_shipped_cache = options.pop("use_shipped_cache", True)
    if args.model:
        options["model"] = args.model
    return LLMSettings(**options), max_failure_fraction, use_shipped_cache


def _cost(usage: dict) -> str:
    """Spending in words: unpriced calls are named, never counted as free."""
    cost = f"${usage.get('cost_usd', 0.0):.4f}"
    unpriced = usage.get("unpriced_calls", 0)
    return cost + (f" + {unpriced} unpriced calls (no price known)" if unpriced else "")


def _cmd_llm(args: argparse.Namespace) -> None:
    from recrepro.llm.stage import run_embeddings, run_text_step

    card, data = _dataset(args)
    out = Path(args.out or paths.llm_dir(args.dataset))
    raw_text = Path(args.raw_text or paths.raw_dir(args.dataset) / "text")
    settings, max_failure_fraction, use_shipped_cache = _llm_options(args)
    if args.step == "embeddings":
        manifest = run_embeddings(data, out, settings, card=card, raw_text_dir=raw_text)
        print(f"wrote embeddings ({manifest['embedding_dim']}-d) and manifest to {out}")
    else:
        report = run_text_step(
            args.step,
            data,
            card,
            out,
            settings,
            max_failure_fraction=max_failure_fraction,
            use_shipped_cache=use_shipped_cache,
            raw_text_dir=raw_text,
        )
        usage = report["usage"]
        print(
            f"{args.step}: {report['entities']} entities, {usage['calls']} calls, {usage.get('cached', 0)} cached, "
            f"{report['failed']} failed, {_cost(usage)}"
        )


def _cmd_llm_export(args: argparse.Namespace) -> None:
    from recrepro.data.fetch import sha256_file
    from recrepro.llm.stage import export_responses

    card, data = _dataset(args)
    settings, _, _ = _llm_options(args)
    raw_text = paths.raw_dir(args.dataset) / "text"
    count = export_responses(data, card, Path(args.stage), settings, args.out, raw_text_dir=raw_text)
    print(f"exported {count} responses to {args.out}; sha256 {sha256_file(args.out)} (model {settings.model})")


def _cmd_tune(args: argparse.Namespace) -> None:
    from recrepro import tuning
    from recrepro.config import merge_overrides, parse_overrides
    from recrepro.inputs import load_extra

    settings = tuning.TuningSettings(
        trials=args.trials, timeout_s=args.timeout, seed=args.seed, storage=args.storage or ""
    )
    study_dir = Path(args.study_dir)
    base = parse_overrides(args.set)
    if args.step == "create":
        reference = tuning.reference_trial(args.method, args.dataset, args.preset, base)
        study = tuning.create_study(args.variant, args.dataset, settings, study_dir, reference)
        tuning.write_json(
            Path(args.out),
            {"study": study.study_name, "budget": {"trials": settings.trials, "timeout_s": settings.timeout_s}},
        )
    elif args.step == "worker":
        _, data = _dataset(args)
        trial_overrides = merge_overrides(base, {"train": {"max_epochs": args.max_epochs}} if args.max_epochs else {})
        summary = tuning.run_worker(
            args.variant,
            args.method,
            args.dataset,
            data,
            settings,
            study_dir,
            args.worker,
            args.workers,
            base_overrides=trial_overrides,
            preset=args.preset,
            device=args.device,
            extras_loader=partial(load_extra, text_dir=_text_dir(args)),
        )
        tuning.write_json(Path(args.out), summary)
    else:
        summary = tuning.export_best(
            args.variant, args.dataset, args.method, settings, study_dir, base_overrides=base, preset=args.preset
        )
        tuning.write_best(Path(args.out), summary)
    print(f"tune {args.step}: wrote {args.out}")


def _cmd_stand_in_text(args: argparse.Namespace) -> None:
    from recrepro.reference_io import write_stand_in_stage

    _, data = _dataset(args)
    out = Path(args.out or paths.stand_in_dir(args.dataset))
    manifest = write_stand_in_stage(data, out)
    print(f"wrote stand-in text of {data.name} to {out} (sha256 {manifest['checksums']['embeddings.npz']})")


def _cmd_export_reference(args: argparse.Namespace) -> None:
    from recrepro import reference_io
    from recrepro.inputs import load_extra

    _, data = _dataset(args)
    out = Path(args.out)
    if args.format == "kgin":
        kg = load_extra("kg", data, text_dir=_text_dir(args))
        checksums = reference_io.export_kgin(data, kg.triples, out, target=args.target)
    else:
        if args.stand_in_text:
            text = reference_io.stand_in_text(data.n_users, data.n_items)
        else:
            embeddings = load_extra("text", data, text_dir=_text_dir(args))
            text = {key: getattr(embeddings, key) for key in reference_io.TEXT_KEYS}
        checksums = reference_io.export_irllrec(data, text, out)
    print(json.dumps({"dataset": data.name, "dataset_sha256": data.checksum, "files": checksums}, indent=1))


def _cmd_table1(args: argparse.Namespace) -> None:
    from recrepro.tables import table1

    _write(args.out, table1(args.meta, title=args.title))


def _cmd_report(args: argparse.Namespace) -> None:
    from recrepro import tables

    runs = tables.Runs.load(args.runs)
    variants = json.loads(args.variants)
    tuning = json.loads(args.tuning) if args.tuning else None
    if args.command == "table2":
        text = tables.table2(runs, variants, tuning, see_also=args.see_also, claims=args.claims)
    elif args.command == "table3":
        text = tables.table3(runs, variants, list(variants), tuning)
    elif args.command == "efficiency":
        text = tables.efficiency_table(runs, variants)
    elif args.command == "claims":
        from recrepro.claims import claims_report, roles_from

        counts, _ = _train_counts(args.data)
        text = claims_report(
            runs, variants, roles_from(json.loads(args.roles)), json.loads(args.ablations), counts, tuning
        )
    else:
        counts, bins = _train_counts(args.data)
        text = tables.sparsity(runs, variants, counts, bins, plot_path=args.plot)
    _write(args.out, text)


def _train_counts(folders: list[str]) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, ...] | None]]:
    """Per dataset: every user's number of training interactions, and the card's sparsity bins."""
    from recrepro.data.canonical import load_canonical
    from recrepro.data.cards import load_card

    counts, bins = {}, {}
    for folder in folders:
        data = load_canonical(Path(folder))
        counts[data.name] = np.bincount(data.train[:, 0], minlength=data.n_users)
        bins[data.name] = load_card(data.name).sparsity_bins
    return counts, bins


def _cmd_fidelity(args: argparse.Namespace) -> None:
    from recrepro import fidelity

    records = [json.loads(Path(path).read_text()) for path in args.runs]
    reference = fidelity.load_reference(args.reference)
    plot_name = None
    if args.plot:
        fidelity.plot_curves(records, reference, args.plot)
        plot_name = os.path.relpath(args.plot, args.out.parent)
    text, ok = fidelity.report(records, reference, args.tolerance, plot_name)
    _write(args.out, text)
    if args.check and not ok:
        raise RuntimeError(f"some rows differ from the reference by more than {args.tolerance:.0%}; see {args.out}")


def _cmd_regression(args: argparse.Namespace) -> None:
    from recrepro import regression
    from recrepro.tables import Runs

    records = Runs.load(args.runs).records
    if args.step == "update":
        regression.write_expected(args.expected, records, args.tolerance)
        print(f"wrote {len(records)} runs' metrics to {args.expected}")
        return
    ok, report = regression.check(records, args.expected)
    print(report)
    if not ok:
        raise RuntimeError("metrics drifted beyond tolerance (see above)")
    if args.out:
        _write(args.out, f"# Regression check\n\n{report}\n")


def _write(path: Path, text: str) -> None:
    write_text(path, text)
    print(f"wrote {path}")


def _cmd_list(args: argparse.Namespace) -> None:
    from recrepro.data.cards import available_datasets
    from recrepro.registry import get_method, list_methods

    print("datasets:", ", ".join(available_datasets()))
    for name in list_methods():
        cls = get_method(name)
        print(f"method {name}: {(cls.__doc__ or '').strip().splitlines()[0]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recrepro", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and DGL (default: all cores)")
    parser.add_argument(
        "--exclusive",
        action="store_true",
        help="this job has its CPUs to itself: idle OpenMP threads spin briefly (OpenMP's default) instead of "
        "sleeping at once (the harness's default, for jobs that run side by side); an OMP_WAIT_POLICY you set wins",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download and verify a dataset's files")
    p.add_argument("dataset")
    p.add_argument("--mirror", help="local folder or URL prefix holding <dataset>/<file> (offline use)")
    p.add_argument("--dest", help="raw folder (default resources/raw/<dataset>)")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--text", action="store_true", help="fetch the dataset's released text source instead")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("prepare", help="convert verified raw files into the canonical format")
    p.add_argument("dataset")
    p.add_argument("--raw", help="raw folder (default resources/raw/<dataset>)")
    p.add_argument("--out", help="output folder (default resources/datasets/<dataset>)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train one method on one dataset and write its run record")
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--seed", type=int, default=2023)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--preset", default="faithful", help="faithful (reference values) or a method's named preset")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a hyperparameter, e.g. model.layers=3 or train.lr=1e-4 (repeatable)",
    )
    p.add_argument("--data", help="canonical dataset folder (default resources/datasets/<dataset>)")
    p.add_argument("--text", help="LLM-stage folder with embeddings.npz (default resources/llm/<dataset>)")
    p.add_argument("--out", help="run record path (default <repo>/results/runs/<dataset>/<variant>/seed<seed>.json)")
    p.add_argument("--resume", action="store_true", help="checkpoint at every validation and resume from it")
    p.add_argument("--variant", help="name of this configuration in tables (default: the method name)")
    p.add_argument("--params", help="tuning result (best.yaml) whose hyperparameters to use; --set still wins")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("tune", help="Optuna tuning on validation data: create a study, run a worker, export the best")
    p.add_argument("step", choices=["create", "worker", "best"])
    p.add_argument("--variant", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--preset", default="faithful")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="fixed overrides applied to every trial (the search space is sampled on top)",
    )
    p.add_argument("--trials", type=int, default=8, help="finished trials in the whole study (all workers)")
    p.add_argument("--timeout", type=float, help="wall-time budget of each worker, in seconds")
    p.add_argument("--seed", type=int, default=2023, help="sampler seed (trial n uses seed + n) and training seed")
    p.add_argument("--storage", help="RDB URL (e.g. postgresql://...); default: journal file in --study-dir")
    p.add_argument("--study-dir", required=True)
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-epochs", type=int, help="cap on the training epochs of each trial (not of the final runs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", help="canonical dataset folder (default resources/datasets/<dataset>)")
    p.add_argument("--text", help="LLM-stage folder (default resources/llm/<dataset>)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("llm", help="LLM stage: generate profiles or intents, or embed them")
    p.add_argument("step", choices=["profiles", "intents", "embeddings"])
    p.add_argument("dataset")
    p.add_argument("--data", help="canonical dataset folder (default resources/datasets/<dataset>)")
    p.add_argument("--out", help="stage folder (default resources/llm/<dataset>)")
    p.add_argument("--settings", help="JSON object of LLM settings (the workflow's `llm` config block)")
    p.add_argument("--model", help="LiteLLM model string, e.g. openai/gpt-4o-mini (overrides --settings)")
    p.add_argument("--raw-text", help="folder of a released text source (default resources/raw/<dataset>/text)")
    p.set_defaults(func=_cmd_llm)

    p = sub.add_parser("llm-export", help="write the responses behind a stage's outputs as a shippable cache")
    p.add_argument("dataset")
    p.add_argument("--stage", required=True, help="stage folder holding cache.jsonl and the profile outputs")
    p.add_argument("--data", help="canonical dataset folder (default resources/datasets/<dataset>)")
    p.add_argument("--settings", help="JSON object of LLM settings")
    p.add_argument("--model", help="LiteLLM model string (overrides --settings)")
    p.add_argument("--out", type=Path, required=True, help="gzip JSONL file to write")
    p.set_defaults(func=_cmd_llm_export)

    p = sub.add_parser("stand-in-text", help="write deterministic stand-in text embeddings (implementation checks)")
    p.add_argument("dataset")
    p.add_argument("--data", help="canonical dataset folder (default resources/datasets/<dataset>)")
    p.add_argument("--out", help="folder to write (default resources/stand-in/<dataset>); pass it to train --text")
    p.set_defaults(func=_cmd_stand_in_text)

    p = sub.add_parser("export-reference", help="write a prepared dataset in an official implementation's input format")
    p.add_argument("dataset")
    p.add_argument("--format", choices=["irllrec", "kgin"], default="irllrec")
    p.add_argument("--out", required=True, help="folder to write (the reference's data/<dataset> folder)")
    p.add_argument("--data", help="canonical dataset folder (default resources/datasets/<dataset>)")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="LLM-stage folder whose embeddings to export (default resources/llm/<dataset>)")
    text.add_argument("--stand-in-text", action="store_true", help="export the deterministic stand-in text instead")
    p.add_argument("--target", choices=["val", "test"], default="test", help="kgin: our part written as test.txt")
    p.set_defaults(func=_cmd_export_reference)

    p = sub.add_parser("table1", help="dataset statistics table from prepared datasets")
    p.add_argument("meta", nargs="+", type=Path, help="meta.json of each prepared dataset")
    p.add_argument("--title", default="Table 1: dataset statistics")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_table1)

    for name, what in (
        ("table2", "overall performance, grouped by backbone, with improvements and significance"),
        ("table3", "ablation table (rows in the order of --variants)"),
        ("efficiency", "time per epoch, epochs and peak memory"),
        ("sparsity", "metrics by user group of training-interaction count, with a plot"),
        ("claims", "a verdict on each of the paper's claims, with effects, intervals and tests"),
    ):
        p = sub.add_parser(name, help=f"{what}, from run records")
        p.add_argument("runs", nargs="+", type=Path, help="run records (JSON)")
        p.add_argument(
            "--variants", required=True, help="JSON object: variant -> {label, group, baseline}, in row order"
        )
        p.add_argument("--tuning", help="JSON object describing the tuning budget (omit when not tuned)")
        p.add_argument("--out", type=Path, required=True)
        if name == "table2":
            p.add_argument("--see-also", nargs="*", default=[], help="other generated tables to mention")
            p.add_argument("--claims", help="the claims report to link at the top (e.g. claims.md)")
        if name in ("sparsity", "claims"):
            p.add_argument("--data", nargs="+", required=True, help="canonical folder of each dataset")
        if name == "sparsity":
            p.add_argument("--plot", type=Path, help="PNG plot to write")
        if name == "claims":
            p.add_argument("--roles", default="{}", help="JSON: the workflow config's `claims` block")
            p.add_argument("--ablations", default="{}", help="JSON: ablation variants (baseline = the full model)")
        p.set_defaults(func=_cmd_report)

    p = sub.add_parser("fidelity", help="our runs next to the official code's numbers on identical inputs")
    p.add_argument("runs", nargs="*", type=Path, help="run records (JSON)")
    p.add_argument("--reference", type=Path, default=paths.REPO_ROOT / "config" / "reference_numbers.yaml")
    p.add_argument("--tolerance", type=float, default=0.03, help="relative tolerance (default 0.03)")
    p.add_argument("--check", action="store_true", help="exit with an error if an unexplained row is outside it")
    p.add_argument("--plot", type=Path, help="PNG of the official and our validation curves, linked from the table")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_fidelity)

    p = sub.add_parser("regression", help="check run metrics against committed expected values, or refresh them")
    p.add_argument("step", choices=["check", "update"])
    p.add_argument("runs", nargs="+", type=Path, help="run records (JSON)")
    p.add_argument("--expected", type=Path, required=True, help="expected metrics (JSON)")
    p.add_argument("--tolerance", type=float, default=0.002, help="absolute tolerance written by update")
    p.add_argument("--out", type=Path, help="with check: markdown report written when the check passes")
    p.set_defaults(func=_cmd_regression)

    p = sub.add_parser("list", help="list datasets and methods")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_job(args.threads, args.exclusive)  # before torch and DGL are imported
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.func(args)
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
