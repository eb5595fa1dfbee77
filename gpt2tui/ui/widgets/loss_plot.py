"""A training-loss plot: a titled ``Sparkline`` whose points are halved (pairwise means) when long."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

MAX_POINTS = 2_000
"""Beyond this many points, neighbours are averaged, so an update's cost stays bounded on long runs."""


class LossPlot(Vertical):
    """Loss per logged step, titled "training loss"; the line above the plot shows the latest and lowest."""

    DEFAULT_CSS = """
    LossPlot {
        height: auto;
        border: round $primary-darken-1;
        padding: 0 1;
    }
    LossPlot {
        border-title-color: $text-muted;
    }
    LossPlot > Label {
        color: $text-muted;
    }
    LossPlot > Sparkline {
        height: 6;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "training loss"
        self.points: list[float] = []
        self.lowest: float | None = None

    def compose(self) -> ComposeResult:
        yield Label("waiting for the first step")
        yield Sparkline([], summary_function=max)

    def add(self, *losses: float) -> None:
        """Append loss values and redraw once."""
        if not losses:
            return
        self.points.extend(losses)
        low = min(losses)
        self.lowest = low if self.lowest is None else min(self.lowest, low)
        while len(self.points) > MAX_POINTS:
            self.points = [
                sum(self.points[i : i + 2]) / len(self.points[i : i + 2])
                for i in range(0, len(self.points), 2)
            ]
        self.query_one(Label).update(f"last {losses[-1]:.4f} · lowest {self.lowest:.4f}")
        self.query_one(Sparkline).data = list(self.points)
