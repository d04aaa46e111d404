"""The sdeppl command: run a recipe, list the gallery, rebuild a report; recipe validation."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sdeppl as sp
from sdeppl.cli import main
from sdeppl.recipes import RecipeError, read_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "inference").glob("*.toml"))


def _tiny(recipe: Path, tmp_path: Path, **overrides) -> Path:
    """A copy of ``recipe`` with tiny settings (smoke size), in ``tmp_path/inference``."""
    text = recipe.read_text()
    for key, value in {
        "warmup": 60,
        "samples": 40,
        "chains": 2,
        "steps": 300,
        **overrides,
    }.items():
        lines = [
            f"{key} = {value}" if line.split("=")[0].strip() == key else line
            for line in text.splitlines()
        ]
        text = "\n".join(lines)
    folder = tmp_path / "inference"
    folder.mkdir(exist_ok=True)
    out = folder / recipe.name
    out.write_text(text)
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_runs_at_smoke_size(recipe, tmp_path, capsys):
    tiny = _tiny(recipe, tmp_path)
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                str(tiny),
                "--out",
                str(out),
                "--models",
                str(ROOT / "models"),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Diagnostics:" in printed and "wrote" in printed
    assert (out / "posterior.nc").stat().st_size > 0 and (
        out / "report.html"
    ).stat().st_size > 0
    if read_recipe(recipe)["compare"] is not None:  # the second fit, side by side
        assert (out / "compare.nc").stat().st_size > 0
        assert "<h2>Comparison</h2>" in (out / "report.html").read_text()


def test_recipes_cover_every_backend():
    """Every backend sdeppl registers has a recipe (backends registered by users or
    by other tests are theirs to cover)."""
    backends = {read_recipe(r)["inference"]["backend"] for r in RECIPES}
    builtin = {
        name
        for name, backend in sp.backends().items()
        if type(backend).__module__.startswith("sdeppl.")
    }
    assert backends == builtin


def test_models_lists_the_gallery(capsys):
    assert main(["models", "--models", str(ROOT / "models")]) == 0
    listing = capsys.readouterr().out
    for name in ("ou", "cir", "double_well"):
        assert name in listing


def test_report_rebuilds_from_posterior(tmp_path, capsys):
    tiny = _tiny(ROOT / "inference" / "ou_numpyro.toml", tmp_path)
    out = tmp_path / "out"
    main(
        [
            "run",
            str(tiny),
            "--out",
            str(out),
            "--models",
            str(ROOT / "models"),
            "--quiet",
        ]
    )
    first = (out / "report.html").read_text()
    (out / "report.html").unlink()
    assert main(["report", str(out / "posterior.nc")]) == 0
    rebuilt = (out / "report.html").read_text()
    assert "Overall verdict" in rebuilt and rebuilt.count(
        "data:image/png;base64"
    ) == first.count("data:image/png;base64")


def _write(tmp_path, text):
    path = tmp_path / "inference" / "r.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_recipe_errors_are_clear(tmp_path, capsys):
    models = str(ROOT / "models")
    cases = {
        '[model]\nname = "nope"\n': "unknown model 'nope'; the gallery",
        '[model]\nname = "ou"\n[inference]\nbackend = "hmc"\n': "unknown backend 'hmc'; expected one of",
        '[model]\nname = "ou"\n[data]\nfile = "missing.csv"\ncolumns = { ts = "t" }\n': "data file",
        '[model]\nname = "ou"\n[inference]\nchians = 2\n': "unknown key(s) ['chians']",
        '[modle]\nname = "ou"\n': "unknown section(s) ['modle']",
        '[model]\nname = "ou"\n[inference]\nchains = -1\n': "chains must be an int >= 1; got -1",
        '[model]\nname = "ou"\n[inference]\nbackend = "map"\nchains = 2\n': "unknown key(s) ['chains'] for backend 'map'",
        '[model]\nname = "ou"\noptions = { methd = "exact" }\n': "['methd'] are not parameters of ou.model",
        '[model]\nname = "ou"\n[compare]\nguide = "path"\n': "[compare] must be a table naming a backend",
        '[model]\nname = "ou"\n[compare]\nbackend = "svi"\nseed = 1\n': "[compare]: ['seed'] come from [inference]",
        '[model]\nname = "ou"\n[compare]\nbackend = "svi"\nchains = 2\n': "[compare]: unknown key(s) ['chains'] for backend 'svi'",
    }
    for text, message in cases.items():
        path = _write(tmp_path, text)
        with pytest.raises(
            RecipeError,
            match=message.replace("(", r"\(")
            .replace(")", r"\)")
            .replace("[", r"\[")
            .replace("]", r"\]"),
        ):
            if "gallery" in message or "parameters" in message:
                run_recipe(path, tmp_path / "o", models)
            else:
                read_recipe(path)
        assert (
            main(["run", str(path), "--models", models, "--out", str(tmp_path / "o")])
            == 2
        )
        assert "sdeppl: error:" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # a failing run writes nothing


def test_failed_run_leaves_previous_results(tmp_path, monkeypatch):
    tiny = _tiny(ROOT / "inference" / "ou_numpyro.toml", tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "posterior.nc").write_text("previous")
    (out / "report.html").write_text("previous")
    import sdeppl.report

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(sdeppl.report, "render_report", broken)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        main(
            [
                "run",
                str(tiny),
                "--out",
                str(out),
                "--models",
                str(ROOT / "models"),
                "--quiet",
            ]
        )
    assert (out / "posterior.nc").read_text() == "previous" and (
        out / "report.html"
    ).read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["posterior.nc", "report.html"]


def test_csv_data_file(tmp_path):
    import numpy as np

    ts = np.arange(50) * 0.1
    x = np.cumsum(np.r_[0.0, 0.1 * np.random.default_rng(0).standard_normal(49)])
    (tmp_path / "inference").mkdir()
    np.savetxt(
        tmp_path / "inference" / "series.csv",
        np.c_[ts, x],
        delimiter=",",
        header="t,value",
        comments="",
    )
    path = _write(
        tmp_path,
        '[model]\nname = "ou"\noptions = { method = "euler" }\n[data]\nfile = "series.csv"\n'
        'columns = { ts = "t", x = "value" }\n[inference]\nchains = 1\nwarmup = 30\nsamples = 20\n',
    )
    assert (
        main(
            [
                "run",
                str(path),
                "--models",
                str(ROOT / "models"),
                "--out",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 0
    )


def test_console_script_runs_chains_on_every_core(tmp_path):
    """The installed ``sdeppl`` command exposes every CPU core as a JAX device, so a
    recipe's chains run in parallel (the run's metadata lists the devices)."""
    exe = Path(sys.executable).with_name("sdeppl")
    listed = subprocess.run(
        [str(exe), "models", "--models", str(ROOT / "models")],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and "cir" in listed.stdout
    tiny = _tiny(ROOT / "inference" / "cir_tbill.toml", tmp_path, chains=4)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [str(exe), "run", str(tiny), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
        env={**env, "SDEPPL_COMPILATION_CACHE": "off"},
    )
    assert result.returncode == 0, result.stderr
    devices = sp.load(tmp_path / "o" / "posterior.nc").metadata["devices"]
    assert len(devices) == len(os.sched_getaffinity(0)), devices
