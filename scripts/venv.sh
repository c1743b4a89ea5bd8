# Sourced by scripts/test and scripts/demo: create .venv and install exactly what uv.lock pins
# (the file the Heroku Python buildpack installs from), again whenever pyproject.toml or uv.lock
# changes. Dev and CI get every extra (demo, test); a deploy gets none.
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml uv.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  if [ ! -x .venv/bin/uv ]; then
    uv_pin=$(grep -o '"uv==[0-9.]*"' pyproject.toml | tr -d '"')
    .venv/bin/python -m pip install --quiet "$uv_pin"
  fi
  # --locked: refuse a uv.lock out of step with pyproject.toml instead of quietly re-resolving.
  UV_PROJECT_ENVIRONMENT=.venv UV_PYTHON_DOWNLOADS=never .venv/bin/uv sync --quiet --locked --all-extras \
    --python .venv/bin/python || return 1 2>/dev/null || exit 1
  rm -f .venv/.installed-*
  touch "$stamp"
fi
