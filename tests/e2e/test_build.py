"""Build like the Heroku Python buildpack: from uv.lock alone, on the Python named in .python-version.

The buildpack picks its package manager from exactly one of requirements.txt, poetry.lock,
Pipfile.lock or uv.lock (several at once is an error), reads .python-version as `N.N` or `N.N.N`,
and installs a uv project with `uv sync --locked --no-default-groups` into its own Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from pydantic import SecretStr

from settings import Settings
from tests.e2e.procs import BIN, REPO

UV = str(BIN / "uv")
OTHER_PACKAGE_MANAGER_FILES = ("requirements.txt", "poetry.lock", "Pipfile.lock", "Pipfile")
BUILDPACK_VERSION_FORM = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?$")


def _uv_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_MANAGED_PYTHON="1", **extra)
    return env


def test_uv_lock_is_in_step_with_pyproject():
    """Re-resolves pyproject.toml offline and compares: a dependency changed without `scripts/lock` fails."""
    result = subprocess.run(
        [UV, "lock", "--check", "--offline"], cwd=REPO, env=_uv_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"uv.lock is out of step with pyproject.toml: run scripts/lock\n{result.stderr}"


def test_exactly_one_package_manager_file():
    assert (REPO / "uv.lock").is_file()
    found = [name for name in OTHER_PACKAGE_MANAGER_FILES if (REPO / name).exists()]
    assert found == [], f"the buildpack refuses an app with several package manager files: {found}"


def test_python_version_file_names_the_python_ci_runs():
    lines = [
        line.strip()
        for line in (REPO / ".python-version").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(lines) == 1, lines
    assert BUILDPACK_VERSION_FORM.match(lines[0]), f"the buildpack accepts N.N or N.N.N, not {lines[0]!r}"
    running = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert (running + ".").startswith(lines[0] + "."), f".python-version says {lines[0]}, CI runs {running}"


def _app_json() -> dict:
    return json.loads((REPO / "app.json").read_text(encoding="utf-8"))


def _procfile_processes(name: str = "Procfile") -> dict[str, str]:
    lines = (REPO / name).read_text(encoding="utf-8").splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_app_json_describes_every_setting_and_marks_secrets():
    env = _app_json()["env"]
    settings = {name.upper(): field for name, field in Settings.model_fields.items()}
    assert sorted(env) == sorted(settings), "app.json env and settings/__init__.py name the same variables"
    for name, field in settings.items():
        entry = env[name]
        assert entry.get("description", "").strip(), f"{name} has no description"
        is_secret = SecretStr in (getattr(field.annotation, "__args__", None) or (field.annotation,))
        assert entry["description"].startswith("Secret.") == is_secret, f"{name}: secret marking"
        if field.is_required() and name not in ("DATABASE_URL", "REDIS_URL"):  # those two come from add-ons
            assert entry.get("required") is True or entry.get("generator") == "secret", name
        if entry.get("generator") == "secret":
            assert is_secret, f"{name} is generated as a secret but is not one"


def test_app_json_formation_and_addons_match_the_procfile():
    app = _app_json()
    processes = _procfile_processes()
    assert set(app["formation"]) == set(processes) - {"release"}
    plans = {addon["plan"].split(":")[0] for addon in app["addons"]}
    assert plans == {"heroku-postgresql", "heroku-redis"}
    assert processes["release"].strip() == "payments release"


def test_build_from_the_lock_alone_in_a_fresh_venv_then_payments_help(tmp_path):
    """What the buildpack does: the committed app files, `uv sync --locked --no-default-groups`, nothing else."""
    app = tmp_path / "app"
    tracked = subprocess.run(
        [shutil.which("git") or "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = REPO / name
        if source.is_file():
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, app / name)
    python_home = tmp_path / "python"
    build = subprocess.run(
        [UV, "sync", "--locked", "--no-default-groups", "--compile-bytecode", "--python", sys.executable],
        cwd=app,
        env=_uv_env(UV_PROJECT_ENVIRONMENT=str(python_home)),
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert build.returncode == 0, build.stderr
    assert not (python_home / "bin" / "pytest").exists(), "test extras are not part of a deploy"

    help_run = subprocess.run(
        [str(python_home / "bin" / "payments"), "--help"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_run.returncode == 0, help_run.stderr
    for command in ("migrate", "release", "web", "worker", "scheduler"):
        assert command in help_run.stdout


def test_env_example_names_every_setting_and_git_ignores_dot_env():
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))
    assert named == {name.upper() for name in Settings.model_fields}
    ignored = subprocess.run([shutil.which("git") or "git", "check-ignore", "-q", ".env"], cwd=REPO, check=False)
    assert ignored.returncode == 0, ".env must be ignored by git"


def test_procfile_dev_releases_before_web_and_migrates_before_the_others():
    processes = _procfile_processes("Procfile.dev")
    assert "release" not in processes, "honcho would run it beside the others and stop everything when it exits"
    assert processes["web"].strip() == "payments release && exec payments web"
    for name in ("worker", "scheduler"):
        assert processes[name].strip() == f"payments migrate && exec payments {name}"
