"""The main figure's legibility (issue 21): AFA's and PEPITA-forward's ODE lines, which
nearly coincide, are drawn differently; the legend says what "(x)" means; the figure
command says "computing …" once.

Oracle: the properties of the matplotlib artists drawn from synthetic data (two identical
ODE curves), and the stderr lines of :func:`theory.runtime.cli.activity`.
"""

import io
import time
from contextlib import redirect_stderr

import matplotlib
import numpy as np

matplotlib.use("Agg")

from figures import _style as S  # noqa: E402
from figures import learning_curves as L  # noqa: E402


def _data(rules):
    alpha = np.geomspace(0.05, 200, 30)
    alpha[0] = 0.0
    eg = 0.3 / (1 + alpha)
    d = {"alpha": alpha, "N": 1000}
    for r in rules:
        k = L.key(r)
        d.update(
            {
                f"{k}_ode": eg,
                f"{k}_sim_mean": eg * 1.01,
                f"{k}_sim_std": 0.1 * eg,
                f"{k}_n_seeds": 10,
            }
        )
    return d


def test_afa_and_pepita_forward_lines_differ_and_x_is_explained():
    rules = ["bp", "fa", "afa", "pepita-forward"]
    cfg = {"rules": rules, "simulation": {"K": 2, "eta": 1.0, "sigma_F": 0.3}}
    fig = L.plot(_data(rules), cfg)
    ax, axr = fig.axes[:2]
    # the ODE lines of panel (a): full-length lines (markers are errorbar artists)
    lines = {S.COLORS[r]: None for r in rules}
    for ln in ax.get_lines():
        if len(ln.get_xdata()) >= 29 and ln.get_color() in lines:
            lines[ln.get_color()] = ln
    afa, pf = lines[S.COLORS["afa"]], lines[S.COLORS["pepita-forward"]]
    np.testing.assert_array_equal(afa.get_ydata(), pf.get_ydata())  # they coincide here
    assert (afa.get_linestyle(), afa.get_linewidth()) != (pf.get_linestyle(), pf.get_linewidth())
    assert afa.get_linestyle() == "-" and pf.get_linestyle() == "--"
    assert afa.get_linewidth() > pf.get_linewidth() and pf.get_zorder() > afa.get_zorder()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    pf_label = next(t for t in texts if t.startswith("PEPITA-forward"))
    assert "updates use the input $x$" in pf_label and r"\tilde{x} = x - Fe" in pf_label
    # the legend's PEPITA-forward handle is dashed like its line
    handles = ax.get_legend().legend_handles
    i = texts.index(pf_label)
    assert handles[i].get_linestyle() == "--"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_activity_without_announce_says_the_start_once():
    from theory.runtime import cli

    cli.set_verbose(True)
    try:
        buf = io.StringIO()
        with redirect_stderr(buf):
            cli.status("[1/1] fig: computing …")
            with cli.activity("fig: computing", delay=0.05, heartbeat=0.1, announce=False):
                time.sleep(0.35)
    finally:
        cli.set_verbose(False)
    lines = buf.getvalue().splitlines()
    assert sum("fig: computing …" in ln for ln in lines) == 1, lines
    assert any(ln.strip().startswith("… still fig: computing") for ln in lines)  # heartbeat
