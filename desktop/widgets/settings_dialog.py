"""Settings: threads, model directory, default task, review threshold, and hybrid mode's cloud settings (the API
key goes to the OS keyring through loupe.core.secrets, never into the settings file), with a connection test."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from loupe.core.cloud import PRESETS, CloudConfig
from loupe.core.secrets import KeyringLike, get_api_key, set_api_key
from loupe.core.tasks import builtin_names
from loupe.desktop.bridge import Background
from loupe.desktop.settings import AppSettings, CloudSettings
from loupe.escalate import ConnectionCheck, check_connection, offline_veto
from PySide6.QtCore import QThreadPool
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

Spin = TypeVar("Spin", QSpinBox, QDoubleSpinBox)


class SettingsDialog(QDialog):
    """Edits a copy of AppSettings; `settings()` is the result once accepted. The key is stored on Save."""

    def __init__(
        self,
        current: AppSettings,
        *,
        ring: KeyringLike | None = None,
        parent: QWidget | None = None,
        db_path: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Loupe settings")
        self.ring = ring
        self.db_path = db_path  # where the connection test is audited (None: no test possible)
        self.pool = QThreadPool(self)
        self.check: Background | None = None  # the connection test in flight
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
        c = current.cloud
        self.timeout = _spin(QDoubleSpinBox(), 1, 600, c.timeout_s, " s")
        self.retries = _spin(QSpinBox(), 0, 10, c.max_retries, "")
        self.max_side = _spin(QSpinBox(), 64, 8192, c.max_side, " px")
        self.max_side.setSingleStep(64)
        self.price_in = _price(c.price_in_per_mtok)
        self.price_out = _price(c.price_out_per_mtok)
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Sends one short text request (no image); it is recorded in the audit log")
        self.test_button.clicked.connect(self.test_connection)
        self.test_button.setEnabled(db_path is not None)
        self.test_result = QLabel()
        self.test_result.setWordWrap(True)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.test_result, 1)
        cloud = QGroupBox("Cloud (hybrid mode; off unless both this and the task allow it)")
        cloud_form = QFormLayout(cloud)
        cloud_form.addRow(self.cloud_enabled)
        cloud_form.addRow("Provider", self.preset)
        cloud_form.addRow("Base URL", self.base_url)
        cloud_form.addRow("Model", self.cloud_model)
        cloud_form.addRow("API key", self.api_key)
        cloud_form.addRow("", self.key_state)
        cloud_form.addRow("Timeout per request", self.timeout)
        cloud_form.addRow("Retries (429, 5xx, timeouts)", self.retries)
        cloud_form.addRow("Longest image side sent", self.max_side)
        cloud_form.addRow("Price per million input tokens", self.price_in)
        cloud_form.addRow("Price per million output tokens", self.price_out)
        cloud_form.addRow(test_row)
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
        self.key_state.setText(
            "a key is stored; type a new one to replace it"
            if known
            else f"no key stored{where}; local servers usually need none"
        )
        self.api_key.setPlaceholderText("kept in the OS keyring, never in a settings file")

    def _choose_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model directory", self.model_dir.text())
        if folder:
            self.model_dir.setText(folder)

    def cloud_settings(self) -> CloudSettings:
        """The cloud settings as edited now (saved or not)."""
        return CloudSettings(
            enabled=self.cloud_enabled.isChecked(),
            preset=self.preset.currentText(),
            base_url=self.base_url.text().strip(),
            model=self.cloud_model.text().strip(),
            timeout_s=self.timeout.value(),
            max_retries=self.retries.value(),
            max_side=self.max_side.value(),
            price_in_per_mtok=self.price_in.value(),
            price_out_per_mtok=self.price_out.value(),
        )

    def settings(self) -> AppSettings:
        """The edited settings (the key is not part of them)."""
        cloud = self.cloud_settings()
        return replace(
            self._current,
            threads=self.threads.value(),
            model_dir=self.model_dir.text().strip(),
            default_task=self.default_task.currentText(),
            review_threshold=self.threshold.value(),
            cloud=cloud,
        )

    # -- connection test ---------------------------------------------------------------------------------
    def test_connection(self) -> Background | None:
        """Send one tiny request with the settings as edited (off the GUI thread); refused, with the reason shown,
        when the cloud is off or LOUPE_OFFLINE forbids the endpoint. The outcome shows beside the button."""
        if self.check is not None or self.db_path is None:
            return None
        cloud = self.cloud_settings()
        config = cloud.config()
        refusal = None if cloud.enabled else "Turn the cloud on above to test the connection; nothing was sent."
        veto = offline_veto(config) if refusal is None else None
        if veto is not None:
            refusal = f"Not sent: {veto}."
        if refusal is not None:
            self._show_check(ConnectionCheck("refused", refusal))
            return None
        key = self.api_key.text().strip() or get_api_key(cloud.preset, cloud.key_env(), ring=self.ring)
        self.test_button.setEnabled(False)
        self.test_result.setStyleSheet("")
        self.test_result.setText(f"Testing {config.resolved()[0]}…")
        self.check = Background(lambda: _probe(config, key, self.db_path), self)  # type: ignore[arg-type]
        self.check.finished.connect(self._show_check)
        self.check.failed.connect(lambda text: self._show_check(ConnectionCheck("failed", text)))
        return self.check.start(self.pool)

    def _show_check(self, check: ConnectionCheck) -> None:
        self.check = None
        self.test_button.setEnabled(self.db_path is not None)
        self.test_result.setText(("Connection OK: " if check.ok else f"{check.verdict.capitalize()}: ") + check.message)
        self.test_result.setStyleSheet("color: #2e7d32;" if check.ok else "color: #c62828;")

    def done(self, code: int) -> None:
        """Closing waits for a connection test in flight (at most its timeout; it is audited either way)."""
        self.pool.waitForDone()
        super().done(code)

    def accept(self) -> None:
        """Store a newly typed key in the keyring first; if that fails, say so and stay open."""
        key = self.api_key.text().strip()
        if key:
            try:
                set_api_key(self.preset.currentText(), key, ring=self.ring)
            except Exception as exc:  # no usable keyring backend: tell the user plainly
                env = PRESETS[self.preset.currentText()].key_env
                self.error.setText(
                    f"The key could not be stored in the OS keyring ({exc}). " + (f"Set ${env} instead." if env else "")
                )
                return
            self.api_key.clear()
        super().accept()


def _probe(config: CloudConfig, key: str | None, db_path: Path) -> ConnectionCheck:
    """On a pool thread: the probe, audited into a store connection of this thread's own."""
    from loupe.store import Store

    with Store(db_path) as store:
        return check_connection(config, key, store)


def _spin(box: Spin, low: float, high: float, value: float, suffix: str) -> Spin:
    box.setRange(low, high)  # type: ignore[arg-type]
    box.setValue(value)  # type: ignore[arg-type]
    box.setSuffix(suffix)
    return box


def _price(value: float) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(4)
    box.setRange(0.0, 100_000.0)
    box.setSingleStep(0.05)
    box.setPrefix("$ ")
    box.setValue(value)
    return box
