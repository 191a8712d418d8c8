"""Stub of flint.client.live_plots."""

from .plots import BasePlot


class LiveImagePlot(BasePlot):
    pass
