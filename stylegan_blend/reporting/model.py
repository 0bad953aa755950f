"""The report's data model: one run, fully resolved for the page, the sheets and the CLI summary."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..run.reader import Run
from ..selection import Choice, Selection
from .scores import ScoreGrid


@dataclass
class CellImage:
    thumb: str | None  # relative to the report folder; None when there is no usable image
    full: str | None
    problem: str = ""  # "no image" / "unreadable image"


@dataclass
class RunSection:
    """One run, fully resolved for the page."""

    slug: str
    run: Run
    metric: str
    label: str
    grid: ScoreGrid
    per_epoch: list[Choice]  # each epoch's marked cell: the rule's pick, or (no identity scores) the lowest style
    overall: Choice | None
    command: str | None = None
    command_note: str = ""
    images: dict[tuple[int, str], CellImage] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    stylized: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)
    selection: Selection | None = None  # the declared rule's picks; None without identity scores
    lowest: Choice | None = None  # the one-sided minimum of `metric`, shown next to the rule's pick
    name: str = ""  # short label: the swept Hydra overrides that tell this run from the others
    sheets: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption); "best" first
    best_of_all: bool = False  # the selection rule prefers its pick among all runs scored on the same axes
    best_of_all_text: str = ""  # "best of all runs by knee: data=anime (stable 80 %; also data=disney)"
    identity_grid: ScoreGrid | None = None  # the selection's identity axis over the same grid

    @property
    def best_label(self) -> str:
        """How `overall` / `per_epoch` were chosen, printed next to every "best"."""
        return f"best by {self.selection.rule}" if self.selection is not None else f"lowest {self.metric}"

    @property
    def style_reference(self) -> str:
        """Which split style was scored against, in words (the run's scores/style_reference.json)."""
        note = self.run.style_reference
        if note is None:
            return "not recorded (runs scored before it was recorded used the training split)"
        return note.get("why") or note.get("split", "?")

    def style_of(self, choice: Choice) -> float:
        """The marked cell's value in `metric` (a rule's Choice carries the rule's value, not the style)."""
        return choice.point.style
