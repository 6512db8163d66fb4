#!/usr/bin/env bash
# Build the one-folder app into dist/loupe/ (executables `loupe` and `loupe-app`), from the repo root's venv.
# Usage: packaging/build.sh [PYTHON]     (default: .venv/bin/python; needs `pip install -e '.[serve,desktop,bundle]'`)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${1:-$root/.venv/bin/python}"
cd "$root"
"$python" -c "import PyInstaller" 2>/dev/null || { echo "PyInstaller is missing: pip install -e '.[bundle]'" >&2; exit 2; }
"$python" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$root/dist" --workpath "$root/build/pyinstaller" "$here/loupe.spec"
echo "built $root/dist/loupe ($(du -sh "$root/dist/loupe" | cut -f1)); try: $root/dist/loupe/loupe demo"
