"""The HTML report opens in headless Chromium: every image loads, no console errors."""

import json
import re
import shutil
import subprocess

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
const originalError = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); originalError(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.documentElement.setAttribute('data-probe',
    JSON.stringify({images: imgs.length, loaded: loaded, errors: window.__errors}));
});
</script>"""


def _browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    def model(ts, x=None):
        theta = numpyro.sample("theta", dist.HalfNormal(1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        return numpyro.sample(
            "x", sp.Path(sp.OU(theta, 0.0, sigma), ts, x0=0.0, method="exact"), obs=x
        )

    ts = jnp.arange(80) * 0.2
    x = sp.Path(sp.OU(1.0, 0.0, 0.5), ts, x0=0.0, method="exact").sample(
        jax.random.key(0)
    )
    x = x.at[30].set(jnp.nan)
    fit = sp.fit(
        model,
        ts,
        x=x,
        chains=2,
        warmup=200,
        samples=200,
        progress=False,
        posterior_predictive=True,
        forecast={"horizon": 3.0, "steps": 6},
    )
    path = tmp_path_factory.mktemp("report") / "report.html"
    fit.report(path)
    return path


def test_report_is_self_contained(report):
    html = report.read_text()
    assert (
        html.count('src="data:image/png;base64,') >= 3
    )  # posteriors with intervals, path, traces and ranks
    assert not re.search(r'src="(?!data:)', html), (
        "an image or script loads from outside the page"
    )
    assert "<link" not in html
    for section in (
        "Model and data",
        "Parameter posteriors",
        "Paths",
        "Traces and ranks",
        "Diagnostics",
        "Run",
    ):
        assert section in html


def test_report_in_headless_chromium(report, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(
            f"no headless browser found (looked for {', '.join(BROWSERS)}); .ci/run installs Debian's chromium"
        )
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile1'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"data-probe=\"([^\"]*)\"", dom.stdout)
    assert match, dom.stderr[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["images"] >= 3 and probe["loaded"] == probe["images"], probe
    assert probe["errors"] == [], probe

    shot = tmp_path / "report.png"
    run = subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,4000",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [
        line
        for line in run.stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line
    ]
    assert console == [], console
    image = mpimg.imread(shot)
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    assert float(np.std(image)) > 0.05  # not a blank page
