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
import sys
from pathlib import Path

import recrepro  # noqa: F401  (sets environment defaults before heavy imports)
from recrepro import paths

log = logging.getLogger("recrepro")


def _cmd_fetch(args: argparse.Namespace) -> None:
    from recrepro.data.cards import load_card
    from recrepro.data.fetch import fetch_dataset

    card = load_card(args.dataset)
    dest = Path(args.dest or paths.raw_dir(card.name))
    verified = fetch_dataset(card, dest, mirror=args.mirror, retries=args.retries)
    manifest = {path.name: spec.sha256 for path, spec in zip(verified, card.files)}
    (dest / "verified.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"verified {len(verified)} file(s) of {card.name} in {dest}")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from recrepro.data.cards import load_card
    from recrepro.data.convert import prepare

    card = load_card(args.dataset)
    data = prepare(card, Path(args.raw or paths.raw_dir(card.name)), Path(args.out or paths.canonical_dir(card.name)))
    print(f"prepared {card.name}: {data.stats()} (sha256 {data.checksum})")


def _cmd_train(args: argparse.Namespace) -> None:
    from recrepro.config import parse_overrides, resolve_config
    from recrepro.data.canonical import load_canonical
    from recrepro.data.cards import load_card
    from recrepro.results import write_run
    from recrepro.trainer import train_run

    config = resolve_config(args.method, args.dataset, seed=args.seed, device=args.device, preset=args.preset,
                            overrides=parse_overrides(args.set))
    data = load_canonical(Path(args.data or paths.canonical_dir(args.dataset)), load_card(args.dataset))
    for deviation in config.deviations:
        log.info("deviation: %s", deviation)
    out = Path(args.out or f"results/runs/{args.dataset}/{args.method}/seed{args.seed}.json")
    checkpoint = out.with_suffix(".ckpt") if args.resume else None
    outcome = train_run(config, data, checkpoint=checkpoint)
    outcome.record["variant"] = args.variant or args.method
    write_run(outcome, out)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    print(json.dumps({"record": str(out), "best_epoch": outcome.record["best_epoch"],
                      "test": outcome.record["metrics"]["test"]}, indent=1))


def _cmd_table1(args: argparse.Namespace) -> None:
    from recrepro.tables import table1

    _write(args.out, table1(args.meta))


def _cmd_table2(args: argparse.Namespace) -> None:
    from recrepro.tables import load_records, table2

    _write(args.out, table2(load_records(args.runs), json.loads(args.variants)))


def _cmd_compare(args: argparse.Namespace) -> None:
    from recrepro.compare import compare, load_reference
    from recrepro.tables import load_records

    text, ok = compare(load_records(args.runs), load_reference(args.reference), args.tolerance)
    _write(args.out, text)
    if args.check and not ok:
        raise RuntimeError(f"some metrics differ from the reference by more than {args.tolerance:.0%}; see {args.out}")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"wrote {path}")


def _cmd_list(args: argparse.Namespace) -> None:
    from recrepro.data.cards import available_datasets
    from recrepro.registry import get_method, list_methods

    print("datasets:", ", ".join(available_datasets()))
    for name in list_methods():
        cls = get_method(name)
        print(f"method {name}: {(cls.__doc__ or '').strip().splitlines()[0]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recrepro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download and verify a dataset's files")
    p.add_argument("dataset")
    p.add_argument("--mirror", help="local folder or URL prefix holding <dataset>/<file> (offline use)")
    p.add_argument("--dest", help="raw folder (default resources/raw/<dataset>)")
    p.add_argument("--retries", type=int, default=3)
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
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a hyperparameter, e.g. model.layers=3 or train.lr=1e-4 (repeatable)")
    p.add_argument("--data", help="canonical dataset folder (default resources/datasets/<dataset>)")
    p.add_argument("--out", help="run record path (default results/runs/<dataset>/<method>/seed<seed>.json)")
    p.add_argument("--resume", action="store_true", help="checkpoint at every validation and resume from it")
    p.add_argument("--variant", help="name of this configuration in tables (default: the method name)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("table1", help="dataset statistics table from prepared datasets")
    p.add_argument("meta", nargs="+", type=Path, help="meta.json of each prepared dataset")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_table1)

    p = sub.add_parser("table2", help="overall performance table from run records")
    p.add_argument("runs", nargs="+", type=Path, help="run records (JSON)")
    p.add_argument("--variants", required=True, help="JSON object: variant name -> {label, ...}, in row order")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_table2)

    p = sub.add_parser("compare", help="compare run records with numbers measured with the reference code")
    p.add_argument("runs", nargs="+", type=Path, help="run records (JSON)")
    p.add_argument("--reference", type=Path, default=paths.REPO_ROOT / "config" / "reference_numbers.yaml")
    p.add_argument("--tolerance", type=float, default=0.03, help="relative tolerance (default 0.03)")
    p.add_argument("--check", action="store_true", help="exit with an error if a metric is outside the tolerance")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("list", help="list datasets and methods")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
