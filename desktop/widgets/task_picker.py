"""Which task runs on the next drop: a built-in one, a task file the user opens, or one made in the editor."""

from __future__ import annotations

from loupe import taskfile
from loupe.core.errors import TaskError
from loupe.core.tasks import Task, builtin_names, builtin_task
from loupe.desktop.widgets.task_editor import TaskEditor
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget


class TaskPicker(QWidget):
    """A combo of tasks plus 'Open task file…'; `problem(str)` when a task file is refused."""

    problem = Signal(str)
    changed = Signal()

    def __init__(self, default: str = "defects", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self._tasks: list[Task] = [builtin_task(n) for n in builtin_names()]
        for task in self._tasks:
            self.combo.addItem(task.name, task.description or task.name)
        names = [t.name for t in self._tasks]
        self.combo.setCurrentIndex(names.index(default) if default in names else 0)
        open_file = QPushButton("Open task file…")
        open_file.clicked.connect(self.open_file)
        new_task = QPushButton("New task…")
        new_task.clicked.connect(self.open_editor)
        self.editor: TaskEditor | None = None
        self.combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Task"))
        layout.addWidget(self.combo, 1)
        layout.addWidget(open_file)
        layout.addWidget(new_task)

    @property
    def task(self) -> Task:
        """The selected task."""
        return self._tasks[self.combo.currentIndex()]

    def add_file(self, path: str) -> bool:
        """Load a task file and select it; False (and `problem`) when it is refused."""
        try:
            task = taskfile.load(path).task  # every section checked on load
        except TaskError as exc:
            self.problem.emit(str(exc))
            return False
        self._tasks.append(task)
        self.combo.addItem(f"{task.name} ({path.rsplit('/', 1)[-1]})")
        self.combo.setCurrentIndex(len(self._tasks) - 1)
        return True

    def open_file(self) -> None:
        """Ask for a task file with a dialog."""
        path, _ = QFileDialog.getOpenFileName(self, "Open a task file", "", "Task files (*.json *.yaml *.yml *.toml)")
        if path:
            self.add_file(path)

    def open_editor(self) -> TaskEditor:
        """The task editor on a blank task; a saved task file is loaded and selected."""
        return self._edit(None)

    def copy_task(self) -> TaskEditor:
        """The task editor starting from the selected task (named NAME-copy, its options kept; File → Copy task…)."""
        return self._edit(self.task)

    def _edit(self, start: Task | None) -> TaskEditor:
        self.editor = TaskEditor(start, self)
        self.editor.saved.connect(self.add_file)
        self.editor.show()
        return self.editor
