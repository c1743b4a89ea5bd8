# Sourced by scripts/test and scripts/demo: create .venv and install the project once,
# again whenever pyproject.toml changes.
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[demo,test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
