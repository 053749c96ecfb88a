"""The README runs as written: the make targets, Makefile variables, modules, notebooks, parameters, files and run
folders its examples name all exist; it stays a front door (short), and speaks to users."""

import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def make_targets() -> set:
    return set(re.findall(r"^([\w/%.-]+):", MAKEFILE, flags=re.M))


def make_variables() -> set:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[?:]?=", MAKEFILE, flags=re.M))


def commands() -> list[str]:
    return [line.split("#")[0].strip() for b in blocks("bash") for line in b.splitlines() if line.strip()]


def test_short_and_plain():
    assert len(README.splitlines()) <= 300 and len(README.encode()) <= 25_000
    for word in ("seed README", "earlier stop", "issue ", "this stop", "reviewer", "session", "REAL_PHOTOS_TABLE",
                 "TIMES_TABLE"):
        assert word not in README, word


def test_make_commands_name_real_targets_and_variables():
    targets, variables = make_targets(), make_variables()
    used = [c for c in commands() if c.startswith("make ")]
    assert used, "the README shows make commands"
    for c in used:
        words = c.split()[1:]
        for w in words:
            if "=" in w:
                assert w.split("=")[0] in variables, (c, w)
            else:
                assert w in targets, (c, w)
    # the settings paragraph's variables too
    para = README.split("Makefile variables for settings:")[1].split("## ")[0]
    for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", para):
        assert name in variables, name


def test_modules_notebooks_files_and_links_exist():
    for c in commands():
        for module in re.findall(r"-m (capkit(?:\.\w+)*)", c):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists() or (ROOT / module.replace(".", "/")).is_dir()
    for link in re.findall(r"\]\(((?:docs|figures|notebooks|capkit)/[^)#]+)", README):
        assert (ROOT / link).exists(), link
    for name in re.findall(r"`(0\d_\w+)`", README):
        assert (ROOT / "notebooks" / f"{name}.ipynb").exists(), name
    for path in re.findall(r"`(capkit/\w+\.py)`", README):
        assert (ROOT / path).exists(), path


def test_the_presets_and_notebook_parameters_it_names_exist():
    from capkit import settings

    for name in re.findall(r"^\| `(\w+)` \|", README.split("| preset | what it is |")[1].split("\n\n")[0], re.M):
        assert name in settings.PRESETS, name
    nb = nbformat.read(ROOT / "notebooks" / "03_train.ipynb", as_version=4)
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert re.search(r"^preset = ", params, re.M)
    for c in commands():
        for flag in re.findall(r"--(\w+)", c):
            if "capkit.train" in c:
                assert flag == "preset" or flag in settings.TrainConfig.__dataclass_fields__, flag


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_the_run_folders_it_names_are_what_make_run_writes():
    for c in commands():
        for folder in re.findall(r"(runs/[\w.-]+)/([\w]+-[\w]+-(?:text|hashtag))", c):
            run_dir, run = folder
            make = next(x for x in commands() if x.startswith("make run") and f"RUN_DIR={run_dir}" in x)
            args = [w for w in make.split()[2:]]
            out = subprocess.run(["make", "-n", "--no-print-directory", "notebooks", *args], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
            assert f"{run_dir}/{run}/03_train.ipynb" in out, (run_dir, run)
