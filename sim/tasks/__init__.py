"""Task families, by kebab-case name (see README.md in this folder for how to add one)."""

from .base import Outcome, SceneError, Task, TaskOptions
from .place_in_container import PlaceInContainer
from .place_relative import PlaceRelative
from .push import Push
from .stack import Stack

TASKS: dict[str, type[Task]] = {
    cls.family: cls for cls in (PlaceInContainer, PlaceRelative, Stack, Push)
}

__all__ = ["TASKS", "Outcome", "SceneError", "Task", "TaskOptions"]
