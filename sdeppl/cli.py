"""The ``sdeppl`` command: argument parsing only (the work is in :mod:`sdeppl.recipes`).

sdeppl run inference/NAME.toml [--out DIR] [--models DIR] [--quiet]
sdeppl models [--models DIR]
sdeppl report posterior.nc [--out report.html]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdeppl", description="Fit stochastic-process models from recipes."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit a recipe; write posterior.nc and report.html")
    run.add_argument(
        "recipe", type=Path, help="a recipe TOML file, e.g. inference/cir_tbill.toml"
    )
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default runs/RECIPE_NAME)",
    )
    run.add_argument(
        "--models",
        type=Path,
        default=None,
        help="gallery folder (default: models/ beside the recipe's folder)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    models = sub.add_parser("models", help="list the gallery models")
    models.add_argument(
        "--models", type=Path, default=None, help="gallery folder (default ./models)"
    )
    report = sub.add_parser(
        "report", help="rebuild report.html from a saved posterior.nc"
    )
    report.add_argument("posterior", type=Path)
    report.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report path (default: report.html beside the posterior)",
    )
    report.add_argument("--title", default=None)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .recipes import RecipeError, default_models_dir, list_models

    try:
        if args.command == "models":
            gallery = list_models(args.models or default_models_dir())
            width = max(map(len, gallery), default=0)
            for name, description in gallery.items():
                print(f"{name:<{width}}  {description}")
            return 0
        if args.command == "report":
            from .diagnostics import load

            out = args.out or args.posterior.with_name("report.html")
            print(load(args.posterior).report(out, title=args.title))
            return 0
        from .recipes import run_recipe

        _, paths = run_recipe(
            args.recipe,
            args.out,
            args.models,
            progress=not args.quiet,
            on_fit=_print_results,
        )
    except (RecipeError, OSError) as e:
        print(f"sdeppl: error: {e}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0


def _print_results(fit) -> None:
    """The posterior summary and the diagnostics, printed as soon as the fit is done
    (before anything is written)."""
    print(fit.summary())
    print(f"\nDiagnostics: {fit.verdict}")
    print(fit.diagnostics().to_string(index=False))


def console_main() -> int:
    """The ``sdeppl`` console script: :func:`main` in a fresh process, after
    :func:`sdeppl.configure` (XLA loop tuning, the persistent compilation cache, and
    every CPU core exposed as a JAX device so chains run in parallel)."""
    from ._config import configure

    configure(host_devices="all")
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
