"""Levels and LOOPSCALE_* variables, read in loopscale.config."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import loopscale
from loopscale import config
from loopscale.errors import LevelError


def test_level_context_nests_and_restores():
    outer = config.current_level().name
    with loopscale.level("serial") as s:
        assert s.name == "serial"
        assert config.current_level().name == "serial"
        with loopscale.level("auto"):
            assert config.current_level().name == "auto"
        assert config.current_level().name == "serial"
    assert config.current_level().name == outer


def test_unknown_level_is_refused_listing_installed_levels():
    with pytest.raises(LevelError) as info:
        with loopscale.level("warp-drive"):
            pass
    msg = str(info.value)
    assert "'warp-drive'" in msg and "serial" in msg and "auto" in msg


@pytest.mark.parametrize("bad", [0, -1, 2.5, "two", True])
def test_max_workers_must_be_a_positive_integer(bad):
    with pytest.raises(LevelError, match="max_workers"):
        with loopscale.level("auto", max_workers=bad):
            pass


def test_usable_cores_respects_affinity():
    cores = config.usable_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPSCALE_CACHE_DIR", str(tmp_path / "c"))
    assert config.cache_dir() == str(tmp_path / "c")
    monkeypatch.delenv("LOOPSCALE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert config.cache_dir() == str(tmp_path / "x" / "loopscale")


@pytest.mark.timeout(60)
def test_bad_loopscale_level_variable_is_a_clear_error():
    env = dict(os.environ, LOOPSCALE_LEVEL="nonsense")
    proc = subprocess.run([sys.executable, "-c", "import loopscale.config as c; c.current_level()"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "LOOPSCALE_LEVEL" in proc.stderr and "'nonsense'" in proc.stderr
