"""``run_script`` and ``MPIExecutor`` without launching: validation and command lines."""

from __future__ import annotations

import sys

import pytest

from loopscale.distribute import MPIExecutor, run_script
from loopscale.distribute._launch import launch_command
from loopscale.errors import LevelError


def test_launch_command_runs_the_script_under_the_abort_on_failure_runner(tmp_path) -> None:
    script = tmp_path / "s.py"
    script.write_text("")
    cmd = launch_command(3, str(script), ["--x", "1"], launcher="mpirun --bind-to core")
    assert cmd == ["mpirun", "--bind-to", "core", "-n", "3", sys.executable, "-m",
                   "loopscale.distribute", str(script), "--x", "1"]


@pytest.mark.parametrize("nprocs", [0, -1, 1.5, True])
def test_launch_command_rejects_a_bad_process_count(tmp_path, nprocs) -> None:
    script = tmp_path / "s.py"
    script.write_text("")
    with pytest.raises(ValueError, match="number of processes must be greater than 0"):
        launch_command(nprocs, str(script))


def test_run_script_names_a_missing_script(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such script"):
        run_script(2, str(tmp_path / "missing.py"))


def test_run_script_passes_the_exit_status_through(tmp_path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import sys; sys.exit(5)")
    assert run_script(1, str(script)) == 5


@pytest.mark.parametrize("options,match", [
    ({"max_workers": 0}, "max_workers must be greater than 0"),
    ({"chunksize": -2}, "chunksize must be a positive number"),
    ({"check": "maybe"}, "check must be one of 'shapes', 'values', 'none'"),
    ({"comm": 3}, "comm must be an mpi4py communicator"),
    ({"workers": 2}, "unknown option"),
])
def test_the_mpi_level_validates_its_options_eagerly(options, match) -> None:
    with pytest.raises(LevelError, match=match):
        MPIExecutor(**options)


def test_the_mpi_level_without_a_launcher_runs_locally_without_mpi(mpi) -> None:
    run = mpi("""
        import sys
        import numpy as np
        import loopscale

        @loopscale.accelerate
        def f(x, out):
            for i in range(x.shape[0]):
                out[i] = x[i] + 1.0

        x = np.arange(50.0); out = np.zeros(50)
        with loopscale.level("mpi"):
            f(x, out)
        print(bool((out == x + 1).all()), "mpi4py.MPI" in sys.modules)
    """, how="python")
    assert run.returncode == 0, run.describe()
    assert run.stdout.split()[-2:] == ["True", "False"], run.describe()


@pytest.mark.parametrize("kwargs,match", [
    ({"results": "some"}, "results must be one of 'root', 'all'; got 'some'"),
    ({"chunksize": 0}, "chunksize must be greater than 0"),
    ({"root": 3}, "root must be a rank between 0 and 0"),
])
def test_map_validates_its_arguments_eagerly(kwargs, match) -> None:
    from loopscale import distribute

    with pytest.raises(ValueError, match=match):
        distribute.map(abs, [1, -2], **kwargs)
    with pytest.raises(TypeError, match="chunksize must be a positive integer"):
        distribute.map(abs, [1, -2], chunksize=2.5)
    with pytest.raises(TypeError, match="root must be an integer rank"):
        distribute.map(abs, [1, -2], root=0.0)
    with pytest.raises(TypeError, match="fn must be callable"):
        distribute.map(3, [1])
