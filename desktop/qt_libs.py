"""Qt's X11 platform libraries, checked before a QApplication exists.

On a stock Debian/Ubuntu desktop some of the libraries Qt's xcb plugin links are not installed (libxcb-cursor0,
libxcb-icccm4, libxcb-keysyms1, ...), and Qt then aborts with "Reinstalling the application may fix this problem".
The app and the kiosk ask `ldd` about the plugin first and say, in one line, which packages to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# shared library (soname) -> the Debian / Ubuntu package that ships it; what PySide6's libqxcb.so links
PACKAGES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
# what the README tells a new machine to install (the ones a stock Debian 12 desktop lacks come first)
README_PACKAGES = (
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-keysyms1",
    "libxcb-image0",
    "libxcb-render-util0",
    "libxcb-randr0",
    "libxcb-shape0",
    "libxcb-xkb1",
    "libxkbcommon-x11-0",
    "libegl1",
    "libgl1",
    "libfontconfig1",
    "libdbus-1-3",
)
NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)

Ldd = Callable[[Path], str | None]  # the plugin -> ldd's output (None: ldd could not run)


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames `ldd` reports as "not found", in its order, each once."""
    return list(dict.fromkeys(NOT_FOUND.findall(ldd_output)))


def apt_line(sonames: list[str]) -> str:
    """The `apt-get install` line for these libraries (a soname with no known package is named as it is)."""
    packages = dict.fromkeys(PACKAGES.get(s, s) for s in sonames)
    return "sudo apt-get install -y " + " ".join(packages)


def readme_line() -> str:
    """The line the README gives for a new machine."""
    return "sudo apt-get install -y " + " ".join(README_PACKAGES)


def uses_xcb(env: Mapping[str, str], argv: list[str] | None = None) -> bool:
    """Whether Qt will load its xcb (X11) plugin: QT_QPA_PLATFORM (or -platform) says xcb, or says nothing on a
    Linux session that is not Wayland."""
    args = argv or []
    platform = env.get("QT_QPA_PLATFORM", "")
    if "-platform" in args[:-1]:
        platform = args[args.index("-platform") + 1]
    if platform:
        return platform.split(":")[0].split(";")[0] == "xcb"
    return not env.get("WAYLAND_DISPLAY")


def xcb_plugin() -> Path | None:
    """PySide6's libqxcb.so, if this PySide6 has one."""
    try:
        import PySide6
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def run_ldd(plugin: Path) -> str | None:
    """`ldd plugin`'s output, or None where there is no ldd or it fails."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def problem(
    prog: str,
    *,
    env: Mapping[str, str] | None = None,
    argv: list[str] | None = None,
    platform: str = sys.platform,
    plugin: Path | None = None,
    ldd: Ldd = run_ldd,
) -> str | None:
    """Loupe's one-line message when Qt's X11 plugin would not load for missing libraries, else None (not Linux,
    not xcb, no plugin, no ldd: nothing to say; Qt's own errors still apply)."""
    if not platform.startswith("linux") or not uses_xcb(os.environ if env is None else env, argv):
        return None
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return None
    output = ldd(plugin)
    missing = missing_libraries(output or "")
    if not missing:
        return None
    return (
        f"{prog}: Qt's X11 libraries are missing ({', '.join(missing)}). Install them: {apt_line(missing)} "
        "(or run without a display: QT_QPA_PLATFORM=offscreen)"
    )


def check_or_exit(prog: str) -> None:
    """Before the QApplication: print the one-line message and exit 2 when Qt's X11 libraries are missing."""
    message = problem(prog, argv=sys.argv)
    if message is not None:
        print(message, file=sys.stderr)
        raise SystemExit(2)
