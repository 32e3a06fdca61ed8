# Sourced by the scripts: create or reuse the project's virtual environment (.venv) and install
# requirements.txt into it when the requirements changed since the last install.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${M4CEA_VENV:-$_root/.venv}"
if [ ! -x "$_venv/bin/python" ]; then
    echo "Creating the virtual environment in $_venv" >&2
    python3 -m venv "$_venv"
fi
_stamp="$_venv/.requirements.sha256"
_want="$(sha256sum "$_root/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    echo "Installing requirements.txt into $_venv (a few minutes the first time)" >&2
    "$_venv/bin/python" -m pip install --quiet --upgrade pip
    "$_venv/bin/python" -m pip install --quiet -r "$_root/requirements.txt"
    echo "$_want" > "$_stamp"
fi
PYTHON="$_venv/bin/python"
export PYTHONPATH="$_root${PYTHONPATH:+:$PYTHONPATH}"
