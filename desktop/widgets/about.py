"""Help → About: the installed version, the license and where the documentation is."""

from __future__ import annotations

import html
import importlib.metadata
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget


def package_facts(dist: str = "loupe") -> dict[str, str]:
    """Version, license and documentation link from the installed package's metadata ("unknown" where absent)."""
    try:
        meta = importlib.metadata.metadata(dist)
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return {"version": "unknown (not installed)", "license": "unknown", "docs": docs_link({})}
    urls = {}
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    license_text = meta.get("License-Expression") or meta.get("License") or "unknown"
    return {"version": version, "license": license_text, "docs": docs_link(urls)}


def docs_link(urls: dict[str, str]) -> str:
    """The package's documentation URL, else its home page, else the README beside a source checkout."""
    for key in ("documentation", "docs", "homepage", "home", "source", "repository"):
        if urls.get(key):
            return urls[key]
    readme = Path(__file__).resolve().parents[2] / "README.md"  # an editable install: the repository's README
    return readme.as_uri() if readme.exists() else "README.md in the Loupe source"


class AboutDialog(QDialog):
    """Loupe's name, version, license and a link to the documentation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Loupe")
        self.facts = package_facts()
        docs = self.facts["docs"]
        link = f'<a href="{html.escape(docs)}">{html.escape(docs)}</a>' if ":" in docs else html.escape(docs)
        self.text = QLabel(
            "<h2>Loupe</h2>"
            "<p>Local-first image → schema-valid JSON with a small vision-language model.</p>"
            f"<p>Version <b>{html.escape(self.facts['version'])}</b><br>"
            f"License: {html.escape(self.facts['license'])}<br>"
            f"Documentation: {link}</p>"
        )
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setOpenExternalLinks(True)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
