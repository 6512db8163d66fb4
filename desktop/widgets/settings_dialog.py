"""Settings: threads, model directory, default task, review threshold, and hybrid mode's cloud settings (the API
key goes to the OS keyring through engine.secrets, never into the settings file)."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.settings import AppSettings, CloudSettings
from engine.backends.cloud import PRESETS
from engine.secrets import KeyringLike, get_api_key, set_api_key
from engine.tasks import builtin_names


class SettingsDialog(QDialog):
    """Edits a copy of AppSettings; `settings()` is the result once accepted. The key is stored on Save."""

    def __init__(self, current: AppSettings, *, ring: KeyringLike | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Loupe settings")
        self.ring = ring
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("automatic")
        self.threads.setValue(current.threads)
        self.model_dir = QLineEdit(current.model_dir)
        self.model_dir.setPlaceholderText("default ($LOUPE_MODEL_DIR or the user data directory)")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_dir)
        model_dir_row = QHBoxLayout()
        model_dir_row.addWidget(self.model_dir, 1)
        model_dir_row.addWidget(browse)
        self.default_task = QComboBox()
        self.default_task.addItems(builtin_names())
        self.default_task.setCurrentText(current.default_task)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setSpecialValueText("each task's own")
        self.threshold.setValue(current.review_threshold)
        local = QGroupBox("On this machine")
        form = QFormLayout(local)
        form.addRow("CPU threads", self.threads)
        form.addRow("Model directory", model_dir_row)
        form.addRow("Default task", self.default_task)
        form.addRow("Review below confidence", self.threshold)

        self.cloud_enabled = QCheckBox("Allow tasks whose escalation ladder has a cloud step to send images")
        self.cloud_enabled.setChecked(current.cloud.enabled)
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(current.cloud.preset)
        self.base_url = QLineEdit(current.cloud.base_url)
        self.cloud_model = QLineEdit(current.cloud.model)
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_state = QLabel()
        self.preset.currentTextChanged.connect(self._preset_changed)
        cloud = QGroupBox("Cloud (hybrid mode; off unless both this and the task allow it)")
        cloud_form = QFormLayout(cloud)
        cloud_form.addRow(self.cloud_enabled)
        cloud_form.addRow("Provider", self.preset)
        cloud_form.addRow("Base URL", self.base_url)
        cloud_form.addRow("Model", self.cloud_model)
        cloud_form.addRow("API key", self.api_key)
        cloud_form.addRow("", self.key_state)
        self.error = QLabel()
        self.error.setStyleSheet("color: #c62828;")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(local)
        layout.addWidget(cloud)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self._current = current
        self._preset_changed(current.cloud.preset)

    def _preset_changed(self, preset: str) -> None:
        entry = PRESETS[preset]
        self.base_url.setPlaceholderText(entry.base_url)
        self.cloud_model.setPlaceholderText(entry.model or "the server's model name")
        self.api_key.clear()
        known = get_api_key(preset, entry.key_env, ring=self.ring) if entry.key_env or self.ring else None
        where = f" (or ${entry.key_env})" if entry.key_env else ""
        self.key_state.setText("a key is stored; type a new one to replace it" if known
                               else f"no key stored{where}; local servers usually need none")
        self.api_key.setPlaceholderText("kept in the OS keyring, never in a settings file")

    def _choose_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model directory", self.model_dir.text())
        if folder:
            self.model_dir.setText(folder)

    def settings(self) -> AppSettings:
        """The edited settings (the key is not part of them)."""
        cloud = CloudSettings(enabled=self.cloud_enabled.isChecked(), preset=self.preset.currentText(),
                              base_url=self.base_url.text().strip(), model=self.cloud_model.text().strip())
        return replace(self._current, threads=self.threads.value(), model_dir=self.model_dir.text().strip(),
                       default_task=self.default_task.currentText(), review_threshold=self.threshold.value(),
                       cloud=cloud)

    def accept(self) -> None:
        """Store a newly typed key in the keyring first; if that fails, say so and stay open."""
        key = self.api_key.text().strip()
        if key:
            try:
                set_api_key(self.preset.currentText(), key, ring=self.ring)
            except Exception as exc:  # no usable keyring backend: tell the user plainly
                env = PRESETS[self.preset.currentText()].key_env
                self.error.setText(f"The key could not be stored in the OS keyring ({exc}). "
                                   + (f"Set ${env} instead." if env else ""))
                return
            self.api_key.clear()
        super().accept()
