# Sourced by the other scripts: make .venv with pycrid installed, quietly.
# Re-installs only when pyproject.toml changed since the last install.

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO_DIR/.venv

ensure_venv() {
	local extras=${1:-}
	local stamp=$VENV/.pycrid-installed
	local want
	want=$(sha256sum "$REPO_DIR/pyproject.toml" | cut -d' ' -f1)$extras
	if [[ ! -x $VENV/bin/python ]]; then
		python3 -m venv "$VENV" || {
			echo "cannot create $VENV (on Debian: apt-get install python3-venv)" >&2
			return 1
		}
	fi
	if [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
		"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
			-e "$REPO_DIR${extras:+[$extras]}" || return 1
		echo "$want" >"$stamp"
	fi
}
