"""Recipes: TOML files that name a gallery model, its data, a backend and its settings.

A recipe (``inference/NAME.toml``)::

    title = "CIR short rate on the US 3-month T-bill"   # optional

    [model]
    name = "cir"                  # models/cir.py in the gallery
    options = { method = "euler" }  # extra keyword arguments of model()

    [data]                        # either the gallery's loader ...
    options = {}                  # keyword arguments of data()
    # ... or a CSV file (path relative to the recipe) with named columns:
    # file = "data/rates.csv"
    # columns = { ts = "year", r = "rate" }   # model keyword = CSV column

    [inference]
    backend = "blackjax"          # any registered backend: sdeppl.backends()
    seed = 0
    x64 = true                    # float64 (default) or float32
    chains = 4                    # ... and any option of the backend
    warmup = 1000
    samples = 1000

    [output]
    posterior_predictive = true
    forecast = { horizon = 2.0, steps = 8 }

    [compare]                     # optional: a second backend on the same model
    backend = "svi"               # ... and its options; seed and x64 as [inference]
    guide = "path"

With ``[compare]``, ``sdeppl run`` fits both, writes the second fit's draws to
``compare.nc`` and sets the two side by side in the report (verdicts, times,
parameter summaries, the posteriors overlaid).

Every key is checked before anything runs -- the backend's options against the
backend registry, the model's options against its ``model()`` signature; a mistake
gives an error naming the key, what was expected and what came.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

_SECTIONS = {
    "title": None,
    "model": {"name", "options"},
    "data": {"options", "file", "columns"},
    "inference": None,  # "backend", "seed", "x64" and the backend's options
    "output": {"posterior_predictive", "forecast", "log_likelihood"},
    "compare": None,  # "backend" and the backend's options
}
_INFERENCE_KEYS = ("backend", "seed", "x64")


class RecipeError(ValueError):
    """A recipe that cannot be run, with the reason."""


def default_models_dir(recipe_path: Path | None = None) -> Path:
    """The gallery: ``models/`` beside the recipe's folder, else ``./models``."""
    if recipe_path is not None:
        candidate = recipe_path.resolve().parent.parent / "models"
        if candidate.is_dir():
            return candidate
    return Path.cwd() / "models"


def list_models(models_dir: Path) -> dict[str, str]:
    """``{name: description}`` of the gallery models in ``models_dir``."""
    if not models_dir.is_dir():
        raise RecipeError(
            f"models directory {str(models_dir)!r} does not exist; pass --models DIR."
        )
    out = {}
    for path in sorted(models_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        out[path.stem] = _read_description(path)
    return out


def _read_description(path: Path) -> str:
    """The gallery file's ``DESCRIPTION`` string, read from its source (not run)."""
    import ast

    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "DESCRIPTION" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    return ""


def load_model_module(name: str, models_dir: Path) -> ModuleType:
    """Import ``models_dir/name.py`` (as ``models.name`` so it can import its
    siblings)."""
    available = list_models(models_dir)
    if name not in available:
        raise RecipeError(
            f"recipe [model] name: unknown model {name!r}; the gallery in "
            f"{str(models_dir)!r} has {sorted(available)}."
        )
    package_root = str(models_dir.parent)
    if package_root not in sys.path:
        sys.path.insert(0, package_root)
    spec = importlib.util.spec_from_file_location(
        f"{models_dir.name}.{name}", models_dir / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    for attr in ("model", "data"):
        if not callable(getattr(module, attr, None)):
            raise RecipeError(f"gallery model {name!r} has no {attr}() function.")
    return module


def read_recipe(path) -> dict:
    """Parse and validate a recipe; returns it with defaults filled in."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {str(path)!r} does not exist.")
    try:
        recipe = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"recipe {str(path)!r} is not valid TOML: {e}") from e
    unknown = set(recipe) - set(_SECTIONS)
    if unknown:
        raise RecipeError(
            f"recipe: unknown section(s) {sorted(unknown)}; "
            f"expected {sorted(_SECTIONS)}."
        )
    for section, keys in _SECTIONS.items():
        if keys is None or section not in recipe:
            continue
        if not isinstance(recipe[section], dict):
            raise RecipeError(
                f"recipe: [{section}] must be a table; got {recipe[section]!r}."
            )
        bad = set(recipe[section]) - keys
        if bad:
            raise RecipeError(
                f"recipe [{section}]: unknown key(s) {sorted(bad)}; "
                f"expected some of {sorted(keys)}."
            )
    if "model" not in recipe or "name" not in recipe["model"]:
        raise RecipeError(
            "recipe: [model] name is required (a file of the gallery, e.g. 'ou')."
        )
    inference = _read_inference(recipe.get("inference", {}))
    compare = None
    if "compare" in recipe:
        given = recipe["compare"]
        if not isinstance(given, dict) or "backend" not in given:
            raise RecipeError(
                "recipe: [compare] must be a table naming a backend, e.g. "
                f'backend = "svi"; got {given!r}.'
            )
        stray = sorted({"seed", "x64"} & set(given))
        if stray:
            raise RecipeError(
                f"recipe [compare]: {stray} come from [inference] (both fits share "
                "them); remove them here."
            )
        compare = _read_inference(
            {**given, "seed": inference["seed"], "x64": inference["x64"]}, "compare"
        )
    data = dict(recipe.get("data", {}))
    if "file" in data:
        file = (path.parent / data["file"]).resolve()
        if not file.is_file():
            raise RecipeError(
                f"recipe [data] file: data file {str(file)!r} does not exist."
            )
        if not isinstance(data.get("columns"), dict) or not data["columns"]:
            raise RecipeError(
                "recipe [data]: a data file needs columns = "
                '{ model_keyword = "csv_column", ... }.'
            )
        data["file"] = file
    output = {"posterior_predictive": True, "forecast": None, "log_likelihood": True}
    output.update(recipe.get("output", {}))
    return {
        "path": path,
        "title": recipe.get("title"),
        "model": {
            "name": recipe["model"]["name"],
            "options": dict(recipe["model"].get("options", {})),
        },
        "data": data,
        "inference": inference,
        "output": output,
        "compare": compare,
    }


def _read_inference(section, name: str = "inference") -> dict:
    """The ``[inference]`` (or ``[compare]``) table with defaults, checked against
    the backend registry."""
    import difflib

    from .infer._backend import get_backend, resolve_options

    if not isinstance(section, dict):
        raise RecipeError(f"recipe: [{name}] must be a table; got {section!r}.")
    inference = {"backend": "blackjax", "seed": 0, "x64": True, **section}
    backend_name = inference["backend"]
    try:
        backend = get_backend(backend_name, f"recipe [{name}] backend")
    except ValueError as e:
        raise RecipeError(str(e).replace("unknown method", "unknown backend")) from None
    given = {k: v for k, v in inference.items() if k not in _INFERENCE_KEYS}
    unknown = sorted(set(given) - set(backend.options))
    if unknown:
        keys = list(backend.options) + list(_INFERENCE_KEYS)
        close = difflib.get_close_matches(unknown[0], keys, n=1)
        raise RecipeError(
            f"recipe [{name}]: unknown key(s) {unknown} for backend {backend_name!r}; "
            f"expected some of {sorted(keys)}."
            + (f" Did you mean {close[0]!r}?" if close else "")
        )
    try:
        resolve_options(backend, given, f"recipe [{name}] (backend {backend_name!r})")
    except ValueError as e:
        raise RecipeError(str(e)) from None
    seed = inference["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecipeError(
            f"recipe [{name}] seed: expected a non-negative integer; got {seed!r}."
        )
    return inference


def check_model_options(recipe: dict, module: ModuleType) -> None:
    """The recipe's model options must be parameters of the gallery's ``model()``."""
    import inspect

    params = inspect.signature(module.model).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(recipe["model"]["options"]) - set(params))
    if unknown:
        raise RecipeError(
            f"recipe [model] options: {unknown} are not parameters of "
            f"{recipe['model']['name']}.model({', '.join(params)})."
        )


def load_data(recipe: dict, module: ModuleType) -> dict:
    """Model keyword arguments: from the gallery loader, or from the recipe's CSV
    file."""
    data = recipe["data"]
    if "file" not in data:
        return dict(module.data(**data.get("options", {})))
    import numpy as np

    table = np.genfromtxt(data["file"], delimiter=",", names=True, dtype=float)
    missing = [c for c in data["columns"].values() if c not in table.dtype.names]
    if missing:
        raise RecipeError(
            f"recipe [data] columns: {missing} not in {str(data['file'])!r} "
            f"(it has {list(table.dtype.names)})."
        )
    return {kw: np.asarray(table[col]) for kw, col in data["columns"].items()}


def check_output_dir(out_dir: Path) -> None:
    """Raise :class:`RecipeError` unless ``out_dir`` is, or can be created as, a
    writable folder (checked before fitting; nothing is created)."""
    import os

    if out_dir.exists():
        if not out_dir.is_dir():
            raise RecipeError(f"output {str(out_dir)!r} exists and is not a folder.")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise RecipeError(f"output folder {str(out_dir)!r} is not writable.")
        return
    ancestor = out_dir.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RecipeError(
            f"output {str(out_dir)!r} cannot be created: {str(ancestor)!r} is a file."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RecipeError(
            f"output {str(out_dir)!r} cannot be created: {str(ancestor)!r} is not "
            "writable."
        )


def run_recipe(
    recipe_path,
    out_dir=None,
    models_dir=None,
    *,
    progress: bool = True,
    on_fit=None,
):
    """Fit a recipe and write ``posterior.nc`` and ``report.html`` into ``out_dir``.

    The output folder is checked before fitting; both files are written atomically,
    and only after the fit succeeded and ``on_fit(fit)`` (e.g. printing the summary)
    ran: a failing run leaves a previous result untouched. With a ``[compare]``
    section the second fit is written to ``compare.nc`` and set beside the first in
    the report. Returns ``(fit, {"posterior": path, "report": path[, "compare":
    path]})``.
    """
    recipe = read_recipe(recipe_path)
    out_dir = Path(out_dir) if out_dir else Path("runs") / recipe["path"].stem
    check_output_dir(out_dir)
    models_dir = Path(models_dir) if models_dir else default_models_dir(recipe["path"])
    module = load_model_module(recipe["model"]["name"], models_dir)
    check_model_options(recipe, module)
    inference = dict(recipe["inference"])
    x64 = bool(inference.pop("x64"))

    import jax

    jax.config.update("jax_enable_x64", x64)
    import sdeppl

    kwargs = load_data(recipe, module)
    kwargs.update(recipe["model"]["options"])
    output = recipe["output"]

    def run(settings):
        settings = {k: v for k, v in settings.items() if k != "x64"}
        return sdeppl.fit(
            module.model,
            method=settings.pop("backend"),
            posterior_predictive=bool(output["posterior_predictive"]),
            forecast=output["forecast"],
            log_likelihood=bool(output["log_likelihood"]),
            progress=progress,
            model_kwargs=kwargs,
            **settings,
        )

    fit = run(inference)
    if on_fit is not None:
        on_fit(fit)
    compare = {}
    if recipe["compare"] is not None:
        other = run(recipe["compare"])
        if on_fit is not None:
            on_fit(other)
        compare[str(recipe["compare"]["backend"])] = other
    title = recipe["title"] or f"{recipe['model']['name']} ({recipe['path'].name})"
    from ._io import atomic_write
    from .report import render_report

    # rendered before anything is written
    page = render_report(fit, title=title, compare=compare or None)
    paths = {"posterior": fit.save(out_dir / "posterior.nc")}
    for other in compare.values():
        paths["compare"] = other.save(out_dir / "compare.nc")
    paths["report"] = atomic_write(
        out_dir / "report.html",
        lambda tmp: Path(tmp).write_text(page, encoding="utf-8"),
    )
    return fit, paths
