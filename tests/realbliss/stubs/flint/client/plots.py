"""Stub of flint.client.plots: the classes exist, building one raises."""

from .. import _unavailable


class BasePlot:
    def __init__(self, *args, **kwargs):
        _unavailable(type(self).__name__)


class LiveCurvePlot(BasePlot):
    pass


class LiveScatterPlot(BasePlot):
    pass


class LiveMcaPlot(BasePlot):
    pass


class LiveImagePlot(BasePlot):
    pass
