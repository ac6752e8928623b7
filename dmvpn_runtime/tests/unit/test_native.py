"""The compiled core's module list (``make native``) and how a running process reports
which of them run compiled."""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import dmvpn_runtime
from dmvpn_runtime import native

SOURCE = Path(dmvpn_runtime.__file__).parent


def test_every_core_module_has_its_source_and_none_of_the_kept_ones_is_listed():
    """setup.py compiles these files: a module renamed or removed must not be left on the
    list, and nhrp.kept (subclasses of ipaddress's classes) cannot be compiled."""
    assert len(set(native.CORE_MODULES)) == len(native.CORE_MODULES)
    for name in native.CORE_MODULES:
        relative = name.removeprefix("dmvpn_runtime.").replace(".", "/") + ".py"
        assert (SOURCE / relative).is_file(), name
    assert "dmvpn_runtime.nhrp.kept" not in native.CORE_MODULES
    assert "dmvpn_runtime.nhrp.engine.config" not in native.CORE_MODULES


def test_compiled_core_names_exactly_the_modules_loaded_from_extensions():
    compiled = native.compiled_core()
    for name in native.CORE_MODULES:
        path = importlib.import_module(name).__file__ or ""
        assert (name in compiled) == (not path.endswith(".py")), path
    assert not native.is_compiled(importlib.import_module("dmvpn_runtime.nhrp.kept"))


def test_the_report_lists_each_module_and_require_fails_on_a_source_run(capsys):
    compiled = native.compiled_core()
    status = native.main(["--require"])
    out = capsys.readouterr().out
    assert f"{len(compiled)} of {len(native.CORE_MODULES)} core modules compiled" in out
    assert all(name in out for name in native.CORE_MODULES)
    assert status == (0 if len(compiled) == len(native.CORE_MODULES) else 1)
    assert native.main([]) == 0


def test_describe_says_how_the_core_runs(monkeypatch):
    """What dmvpnd logs and 'show status' gives, for each kind of build."""
    monkeypatch.setattr(native, "stale_core", lambda: [])
    total = len(native.CORE_MODULES)
    for compiled, expected in (
        ([], "source"),
        (list(native.CORE_MODULES), "compiled"),
        (list(native.CORE_MODULES[:3]), f"source, 3 of {total} modules compiled"),
    ):
        monkeypatch.setattr(native, "compiled_core", lambda names=compiled: names)
        assert native.describe() == expected


def test_a_compiled_module_older_than_its_source_is_reported_stale(tmp_path, monkeypatch):
    """An in-place build not redone after an edit would run the old code: say so."""
    package = tmp_path / "pkg"
    package.mkdir()
    suffix = native._EXTENSION_SUFFIXES[0]
    built, source = package / f"mod{suffix}", package / "mod.py"
    built.write_bytes(b"")
    source.write_text("# edited after the build\n")
    os.utime(built, (1_000_000, 1_000_000))
    module = types.ModuleType("pkg.mod")
    module.__file__ = str(built)
    monkeypatch.setitem(sys.modules, "pkg.mod", module)
    monkeypatch.setattr(native, "compiled_core", lambda: ["pkg.mod"])
    assert native.stale_core() == ["pkg.mod"]
    assert native.describe().startswith("compiled, but 1 module(s) older than the source")
    os.utime(built)  # rebuilt: newer than the source again
    assert native.stale_core() == []
