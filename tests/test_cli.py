"""The ``loopscale`` command: info, demo, and the verbs that are planned."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loopscale import cli, config
from loopscale._demo import compare_results
from loopscale._info import collect_info, run_probes

#: The label of every line of ``loopscale info``, in order.
INFO_LABELS = (
    "loopscale",
    "python",
    "platform",
    "numpy",
    "numba",
    "llvmlite",
    "mpi4py",
    "MPI library",
    "mpiexec",
    "cores",
    "threading layer",
    "CUDA",
    "vector math",
    "cache directory",
    "level",
)

#: The keys of ``loopscale info --json``.
INFO_KEYS = {
    "loopscale",
    "python",
    "platform",
    "packages",
    "mpi",
    "cores",
    "threading",
    "cuda",
    "vector_math",
    "cache_dir",
    "level",
}


def _loopscale_command() -> str:
    script = Path(sys.executable).with_name("loopscale")
    if not script.exists():
        pytest.fail(
            f"the loopscale command is not installed next to {sys.executable}; "
            'run pip install -e ".[test]"'
        )
    return str(script)


def _run(command: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        check=False,
    )


def test_info_prints_every_field() -> None:
    proc = _run([_loopscale_command(), "info"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    labels = [
        next((label for label in INFO_LABELS if line.startswith(label + " ")), None)
        for line in lines
    ]
    assert labels == list(INFO_LABELS), proc.stdout
    fields = {label: line[len(label) :].strip() for label, line in zip(labels, lines, strict=True)}
    assert fields["cores"].startswith(f"{config.usable_cores()} usable by this process")
    assert f"os.cpu_count() = {os.cpu_count()}" in fields["cores"]
    assert "MPI standard" in fields["MPI library"] or fields["MPI library"].startswith(
        "not available: "
    )
    assert "device(s)" in fields["CUDA"] or fields["CUDA"].startswith("not available: ")
    assert "importable: " in fields["threading layer"]
    assert fields["cache directory"].startswith(os.environ["LOOPSCALE_CACHE_DIR"])
    assert fields["vector math"].startswith(("glibc libmvec, AVX2 (", "off ("))


def test_info_says_when_vector_math_is_turned_off() -> None:
    proc = _run([sys.executable, "-m", "loopscale", "info", "--json"], LOOPSCALE_VECTOR_MATH="0")
    assert proc.returncode == 0, proc.stderr
    section = json.loads(proc.stdout)["vector_math"]
    assert section == {"used": False, "description": "off (LOOPSCALE_VECTOR_MATH=0)"}


def test_info_json_has_every_field() -> None:
    proc = _run([sys.executable, "-m", "loopscale", "info", "--json"])
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert set(info) == INFO_KEYS
    assert set(info["packages"]) == {"numpy", "numba", "llvmlite", "mpi4py"}
    assert info["cores"] == {"usable": config.usable_cores(), "cpu_count": os.cpu_count()}
    assert (info["mpi"]["library"] is None) == (info["mpi"]["error"] is not None)
    assert isinstance(info["threading"]["importable"], list)
    assert info["cuda"]["available"] or info["cuda"]["reason"]
    assert info["cache_dir"]["path"] == os.path.abspath(os.environ["LOOPSCALE_CACHE_DIR"])
    assert info["level"]["current"] in info["level"]["installed"]


def test_info_reports_an_invalid_level_instead_of_failing() -> None:
    proc = _run(
        [sys.executable, "-m", "loopscale", "info", "--json"], LOOPSCALE_LEVEL="no-such-level"
    )
    assert proc.returncode == 0, proc.stderr
    level = json.loads(proc.stdout)["level"]
    assert level["current"] is None
    assert "no-such-level" in level["error"]


def test_collect_info_does_not_import_mpi_or_cuda_here() -> None:
    watched = ("mpi4py.MPI", "numba.cuda")
    before = {name for name in watched if name in sys.modules}
    if before == set(watched):
        pytest.skip(f"{before} were imported by an earlier test; the subprocess tests cover it")
    collect_info()
    assert {name for name in watched if name in sys.modules} == before


def test_collect_info_in_a_fresh_process_imports_neither(run_python) -> None:
    proc = run_python(
        """
        import json, sys
        from loopscale._info import collect_info
        collect_info()
        print(json.dumps([m for m in ("mpi4py.MPI", "numba.cuda") if m in sys.modules]))
        """
    )
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_probes_report_their_result_or_why_there_is_none() -> None:
    results = run_probes(
        {
            "ok": "print('noise'); print('{\"answer\": 42}')",
            "raises": "raise ImportError('libmpi.so.12: cannot open shared object file')",
            "silent": "pass",
            "hangs": "import time; time.sleep(60)",
        },
        timeout=2.0,
    )
    assert results["ok"].value == {"answer": 42} and results["ok"].error is None
    assert results["raises"].error == ("ImportError: libmpi.so.12: cannot open shared object file")
    assert results["silent"].error == "the probe printed no result"
    assert results["hangs"].error == "the probe did not finish within 2 s"


def test_demo_quick_matches_python_and_lists_planned_rungs() -> None:
    proc = _run([sys.executable, "-m", "loopscale", "demo", "--quick"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {
        line.split()[0].rstrip(":"): line
        for line in proc.stdout.splitlines()
        if line.split()
        and line.split()[0].rstrip(":") in ("python", "serial", "threads", "mpi", "cuda")
    }
    assert "reference" in rows["python"]
    assert "identical to Python (int64, exact)" in rows["serial"]
    assert re.search(r" \d+x  identical", rows["serial"]), rows["serial"]  # the speedup
    if "mpi" in config.installed_levels():  # launched with mpiexec -n 2 by the demo
        assert "identical to Python (int64, exact), bit for bit the serial result" in rows["mpi"]
    for rung in ("threads", "cuda"):
        if rung not in config.installed_levels():
            assert rows[rung] == f"{rung}: not available yet (planned)"
        elif rung == "threads":
            assert "identical to Python (int64, exact), bit for bit the serial result" in rows[
                rung]
        else:  # an installed cuda level runs, or says why it cannot here
            assert "identical to Python" in rows[rung] or "not available: " in rows[rung]
    assert "f.explain()" in proc.stdout


def test_demo_rejects_an_unknown_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--size", "huge"]) == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_run_of_a_missing_script_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "-n", "2", "/no/such/script.py"]) == 2
    assert "loopscale run:" in capsys.readouterr().err


def test_run_without_a_script_or_with_an_empty_dash_m_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "-n", "2"]) == 2
    assert "give a script to run" in capsys.readouterr().err
    assert cli.main(["run", "-n", "2", "-m"]) == 2
    assert "-m needs a module name" in capsys.readouterr().err
    assert cli.main(["run", "-n", "2", "-m", "no_such_module_xyz"]) == 2
    assert "no module named 'no_such_module_xyz'" in capsys.readouterr().err


def test_unknown_options_of_implemented_verbs_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["info", "--no-such-option"]) == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: loopscale" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import loopscale

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"loopscale {loopscale.__version__}"


def test_compare_results_is_exact_for_integers_and_tight_for_floats() -> None:
    ints = np.arange(6, dtype=np.int64)
    assert compare_results(ints, ints.copy())[0]
    assert compare_results(ints, ints + np.array([0, 0, 0, 0, 0, 1])) == (
        False,
        "1 of 6 values differ from Python's",
    )
    floats = np.linspace(1.0, 2.0, 5)
    assert compare_results(floats, floats * (1 + 1e-13))[0]
    assert not compare_results(floats, floats * (1 + 1e-11))[0]
    assert not compare_results(ints, ints[:3])[0]


@pytest.mark.mpi
def test_run_passes_the_scripts_arguments_as_python_does(tmp_path) -> None:
    # `loopscale run -n 1 script.py -- -x` gave the script ['-x']: argparse drops
    # the first `--`, which `python script.py -- -x` passes on
    script = tmp_path / "argv.py"
    script.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    for args in (["--", "-x", "a"], ["-x", "--", "a"], ["--nprocs", "3", "-n"], []):
        want = _run([sys.executable, str(script), *args])
        for launch in (["-n", "1", str(script)], ["--nprocs=1", "--", str(script)]):
            got = _run([sys.executable, "-m", "loopscale", "run", *launch, *args])
            assert got.returncode == 0, got.stdout + got.stderr
            assert json.loads(got.stdout.splitlines()[-1]) == json.loads(want.stdout), (
                launch, args, got.stdout)
