"""The package layout promises: import names, no stdlib shadowing, a wheel that works."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_never_shadows_the_stdlib() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import operator, asyncio; print(operator.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(out.stdout.strip()).parent == Path(sysconfig.get_paths()["stdlib"])


def test_import_names_map_to_the_folders() -> None:
    import teledrive.operator.client
    import teledrive.shared.messages
    import teledrive.vehicle.service

    assert Path(teledrive.shared.messages.__file__).parent == ROOT / "shared"
    assert Path(teledrive.vehicle.service.__file__).parent == ROOT / "vehicle"
    assert Path(teledrive.operator.client.__file__).parent == ROOT / "operator"


@pytest.mark.slow
def test_wheel_installs_and_imports(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("teledrive-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "teledrive/operator/hub.py" in names
    assert "teledrive/vehicle/service.py" in names
    assert "teledrive/operator/__init__.py" not in names
    for folder in ("shared", "vehicle", "operator"):
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            assert f"teledrive/{source.relative_to(ROOT)}" in names, source
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    purelib = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path[:0] = [{str(target)!r}]; sys.path.append({purelib!r});"
        "import teledrive.operator.hub, teledrive.shared.cli, teledrive.vehicle.service, operator;"
        "print(teledrive.shared.cli.__file__); print(operator.__file__)"
    )
    # -S: no .pth files, so the editable install's import hook is not in play.
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    cli_path, operator_path = out.stdout.split()
    assert cli_path.startswith(str(target))
    assert Path(operator_path).parent == Path(sysconfig.get_paths()["stdlib"])
