"""Figures written as PNG artifacts, without pyplot.

privtrain draws on its own :class:`matplotlib.figure.Figure` objects instead of switching the global
backend (``matplotlib.use("Agg")``): a notebook that calls :func:`privtrain.run` keeps its inline plots,
and nothing is left open in pyplot's figure registry.
"""

from __future__ import annotations


def figure(figsize: tuple[float, float], dpi: float | None = None, **subplots):
    """A fresh figure and its axes (``Figure.subplots`` keywords), drawn by the Agg canvas on save."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(**subplots)
