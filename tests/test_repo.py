"""The repository itself: dvc.yaml deps match what each stage imports, ruff passes, and nothing
refers to a file outside the clone."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtlib", "stages")


def module_file(name: str) -> Path | None:
    """The repo file of a module of ours (mtlib.x, stages.y), or None for anything else."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (the lazy imports that keep
    `import mtlib` cheap count too: they run when the stage calls that function). A package's
    __init__ counts with its top-level imports only: Python runs it on the way to any
    submodule, but its functions are the user-facing API (`mtlib.transcribe`), which no stage calls."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if path.name == "__init__.py" else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from mtlib import events`
    return names


def code_deps(stage_module: str) -> set[str]:
    """The files a stage runs, as dvc.yaml names them: each module reached from the stage's
    own module through imports, with the parent packages' __init__ files that Python runs on the
    way; the mtlib.models package as one directory."""
    seen: set[Path] = set()
    todo = [module_file(stage_module)]
    while todo:
        path = todo.pop()
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            todo += [module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    deps = set()
    for path in seen:
        rel = path.relative_to(ROOT).as_posix()
        deps.add("mtlib/models" if rel.startswith("mtlib/models/") else rel)
    return deps


def stages_of_dvc_yaml() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(stages_of_dvc_yaml()))
def test_each_stage_depends_on_exactly_the_code_it_imports(stage):
    spec = stages_of_dvc_yaml()[stage]
    module = spec["cmd"].split("python -m ")[1].split()[0]
    listed = {d for d in spec["deps"] if str(d).split("/")[0] in PACKAGES}
    want = code_deps(module)
    assert listed == want, (
        f"dvc.yaml stage {stage}: missing {sorted(want - listed)}, not imported {sorted(listed - want)}"
    )


def test_code_deps_follow_lazy_and_package_imports(tmp_path):
    """The walk itself: train_seq2seq reaches the models through pipeline's function-level imports."""
    deps = code_deps("stages.train_seq2seq")
    assert {
        "stages/train_seq2seq.py",
        "mtlib/__init__.py",
        "mtlib/pipeline.py",
        "mtlib/models",
    } <= deps
    assert "mtlib/demo.py" not in deps  # the demo renderer is not part of training


def test_ruff_lint_and_format_pass():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: run scripts/setup (it is pinned in requirements.txt)")
    for args in (["check", "."], ["format", "--check", "."]):
        run = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, f"ruff {' '.join(args)}:\n{run.stdout}{run.stderr}"


def test_nothing_refers_to_a_file_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    outside = ("DESIGN.md", "STYLE.md", "../shared", "/work/")
    bad = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".yaml", ".toml", ".txt", ""} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        bad += [
            f"{name}: {word}" for word in outside if word in text and name != "tests/test_repo.py"
        ]
    assert not bad, bad


def test_outputs_get_the_users_normal_permissions(tmp_path):
    """Atomic writes go through tempfile (0600 files, 0700 folders); the renamed outputs get what
    the umask gives a plainly created file, so others on a shared machine can read results."""
    import os

    from mtlib.io import atomic_dir, atomic_path, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f.txt").write_text("f")
        assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
        os.umask(0o077)
        write_json(tmp_path / "private.json", {})
        assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_a_stage_names_a_bad_input_without_a_traceback(tmp_path):
    """A user error is one line naming the file and the problem, exit 2; MTLIB_DEBUG=1 shows
    the traceback (issue 14)."""
    import os

    params = tmp_path / "params.yaml"
    params.write_text("data: {root: " + str(tmp_path / "nowhere") + "}\naudio: {}\nsegment: {}\n")
    cmd = [
        sys.executable,
        "-m",
        "stages.segment",
        "--params",
        str(params),
        "--out",
        str(tmp_path / "f"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "MTLIB_DEBUG"}
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "nowhere" in run.stderr and "Error:" in run.stderr
    assert not (tmp_path / "f").exists()
    debug = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**env, "MTLIB_DEBUG": "1"}
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_set_of_outputs_appears_together_or_not_at_all(tmp_path):
    """atomic_files: all renamed on success; nothing on a failure while writing; and when a
    rename fails half way (a folder has the last file's name), the files already renamed are
    removed again. output_problem says so beforehand, naming the path."""
    from mtlib.io import atomic_files, output_problem

    names = [tmp_path / "out" / f"a.{s}" for s in ("mid", "csv", "png")]
    with atomic_files(names) as temps:
        for t in temps:
            t.write_text(t.suffix)
    assert [p.read_text() for p in names] == [".mid", ".csv", ".png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv", "a.mid", "a.png"]

    fresh = [tmp_path / "new" / f"b.{s}" for s in ("mid", "csv")]
    with pytest.raises(RuntimeError), atomic_files(fresh) as temps:
        temps[0].write_text("x")
        raise RuntimeError("the plot failed")
    assert list((tmp_path / "new").iterdir()) == []

    blocked = [tmp_path / "new" / "c.mid", tmp_path / "new" / "c.csv"]
    blocked[1].mkdir()
    assert output_problem(blocked) == f"{blocked[1]} is a folder; cannot write a file there"
    with pytest.raises(OSError), atomic_files(blocked) as temps:
        for t in temps:
            t.write_text("x")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["c.csv"]  # the folder only
    (tmp_path / "file").write_text("")
    assert "is a file, not a folder" in output_problem([tmp_path / "file" / "d.mid"])
    assert output_problem(names) is None


def test_every_dvc_exp_run_key_in_the_docs_is_a_params_key():
    """`dvc exp run -S key=value` lines in README.md and docs/ name keys params.yaml has (a renamed
    key would otherwise leave a command that fails for the reader)."""
    import re

    from mtlib.params import section

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = []
    for path in texts:
        for key in re.findall(r"-S\s+'?([a-z_][a-z0-9_.]*)=", path.read_text()):
            try:
                section(params, key)
            except KeyError:
                pytest.fail(f"{path.name}: -S {key}: no such param")
            found.append(key)
    assert "train.ctc.epochs" in found and "decode.min_len" in found
