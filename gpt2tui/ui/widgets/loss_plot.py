"""The loss chart of the run monitor: training loss per logged step and held-out loss per evaluation, on one
pair of axes, so a widening gap (overfitting) is visible at a glance.

Hand-drawn rather than a plotting library: the chart needs two series, a labelled y axis and a step axis in
as little as 3 rows by 40 columns, and bars drawn with eighth blocks give 8 levels per row there, where a
plotting widget's braille or dot markers give 4 and bring a dependency (plotext) with them.
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

MAX_POINTS = 2_000
"""Beyond this many training points, neighbours are averaged, so a redraw's cost stays bounded on long runs."""
BARS = " ▁▂▃▄▅▆▇█"
EVAL_MARK = "●"
WAITING = "waiting for the first step"


class LossPlot(Widget):
    """Training loss as bars, held-out loss as ● marks, with the loss range on the left and steps below.

    ``points`` are the training losses in order (averaged pairwise once there are more than
    :data:`MAX_POINTS`); ``evals`` the ``(step, loss)`` of each held-out evaluation.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"loss-plot--train", "loss-plot--eval", "loss-plot--axis"}
    DEFAULT_CSS = """
    LossPlot {
        height: 8;
        border: round $primary-darken-1;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    LossPlot > .loss-plot--train {
        color: $primary;
    }
    LossPlot > .loss-plot--eval {
        color: $warning;
        text-style: bold;
    }
    LossPlot > .loss-plot--axis {
        color: $text-muted;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "loss"
        self.points: list[float] = []
        self.point_steps: list[float] = []
        self.evals: list[tuple[int, float]] = []
        self.total_steps = 0
        self.lowest: float | None = None

    def add(self, *losses: float, steps: list[int] | None = None) -> None:
        """Append training losses (at ``steps``, else one step after the last) and redraw once."""
        if not losses:
            return
        last = self.point_steps[-1] if self.point_steps else 0
        at = steps if steps is not None else [int(last) + 1 + i for i in range(len(losses))]
        self.points.extend(losses)
        self.point_steps.extend(at)
        self.lowest = min(losses) if self.lowest is None else min(self.lowest, *losses)
        while len(self.points) > MAX_POINTS:
            self.points = halve(self.points)
            self.point_steps = halve(self.point_steps)
        self.refresh()

    def add_eval(self, step: int, loss: float) -> None:
        """A held-out evaluation's loss at ``step`` (0: before training)."""
        self.evals.append((step, loss))
        self.refresh()

    def set_total(self, total_steps: int) -> None:
        """The run's planned steps: the right end of the step axis."""
        if total_steps != self.total_steps:
            self.total_steps = total_steps
            self.refresh()

    def legend(self, width: int = 1_000) -> Text:
        """The first line: the newest training and held-out losses, with the lowest of each when they fit."""
        train = self.get_component_rich_style("loss-plot--train")
        held_out = self.get_component_rich_style("loss-plot--eval")
        if not self.points and not self.evals:
            return Text(WAITING, self.get_component_rich_style("loss-plot--axis"))
        best = min((loss for _, loss in self.evals), default=None)
        forms = (  # (training label, held-out label, newest and lowest as text): the widest that fits
            ("▆ training", f"{EVAL_MARK} held-out", "last {:.4f} · lowest {:.4f}"),
            ("▆ training", f"{EVAL_MARK} held-out", "{:.4f} (lowest {:.4f})"),
            ("▆ train", f"{EVAL_MARK} held-out", "{:.4f}"),
        )
        for train_label, eval_label, figures in forms:
            text = Text()
            if self.points:
                text.append(train_label, train)
                text.append(" " + figures.format(self.points[-1], self.lowest))
            if self.evals:
                text.append("   " if self.points else "")
                text.append(eval_label, held_out)
                text.append(" " + figures.format(self.evals[-1][1], best))
            if text.cell_len <= width:
                break
        return text

    def render(self) -> Text:
        width, height = self.content_size
        legend = self.legend(width)
        legend.truncate(width)
        if height < 3 or width < 16 or not (self.points or self.evals):
            return legend
        return Text("\n").join([legend, *self.chart(width, height - 1)])

    def chart(self, width: int, height: int) -> list[Text]:
        """``height`` rows: the plot rows then the step axis, ``width`` cells each."""
        axis_style = self.get_component_rich_style("loss-plot--axis")
        train_style = self.get_component_rich_style("loss-plot--train")
        eval_style = self.get_component_rich_style("loss-plot--eval")
        rows = height - 1
        values = self.points + [loss for _, loss in self.evals]
        low, high = min(values), max(values)
        if high - low < 1e-9:
            low, high = low - 0.5, high + 0.5
        labels = [f"{high:.2f}", f"{low:.2f}"]
        label_width = max(len(label) for label in labels)
        plot_width = width - label_width - 1
        last_step = max([*self.point_steps, *(step for step, _ in self.evals), self.total_steps, 1])

        def column(step: float) -> int:
            return min(plot_width - 1, max(0, round(step / last_step * (plot_width - 1))))

        def level(loss: float) -> int:
            """Height in eighths of a cell above the bottom of the plot (at least one eighth)."""
            return max(1, round((loss - low) / (high - low) * (rows * 8 - 1)) + 1)

        sums: dict[int, list[float]] = {}
        for step, loss in zip(self.point_steps, self.points, strict=True):
            sums.setdefault(column(step), []).append(loss)
        bars = {c: level(sum(group) / len(group)) for c, group in sums.items()}
        known = sorted(bars)
        for left, right in pairwise(known):  # between two logged steps: a straight line
            for c in range(left + 1, right):
                bars[c] = round(bars[left] + (bars[right] - bars[left]) * (c - left) / (right - left))
        marks: dict[tuple[int, int], bool] = {}
        for step, loss in self.evals:
            marks[(column(step), rows - 1 - (level(loss) - 1) // 8)] = True

        lines: list[Text] = []
        for row in range(rows):
            label = labels[0] if row == 0 else labels[1] if row == rows - 1 else ""
            line = Text(label.rjust(label_width) + ("┤" if label else "│"), axis_style)
            floor = (rows - 1 - row) * 8  # eighths below this row
            for c in range(plot_width):
                fill = min(8, max(0, bars.get(c, 0) - floor))
                if marks.get((c, row)):
                    background = train_style.color if fill == 8 else None
                    line.append(EVAL_MARK, eval_style + Style(bgcolor=background))
                else:
                    line.append(BARS[fill], train_style)
            lines.append(line)
        left, right = "0", f"{last_step:,} steps"
        rule = "─" * max(0, plot_width - len(left) - len(right) - 1)
        lines.append(Text(" " * label_width + "└" + left + rule + " " + right, axis_style))
        return lines


def halve(values: list[float]) -> list[float]:
    """Neighbours averaged pairwise (a trailing odd one kept): half as many points, the same shape."""
    return [sum(values[i : i + 2]) / len(values[i : i + 2]) for i in range(0, len(values), 2)]
