"""The layout of docs/architecture.md, held by tests: floor below two wings, the hall above them.

    ocr_base      the floor: imports neither wing
    detector_np   the detector wing: imports ocr_base only
    trocr_np      the recogniser wing (HALL modules excepted: they may import the detector wing)
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ocr_base", "detector_np", "trocr_np")
# trocr_np modules that form the hall above both wings (the page pipeline and its front ends)
HALL = {"pipeline", "cli", "crop", "formats", "spark", "__init__", "__main__"}
MAX_LINES = 600


def _modules(package):
    return sorted((ROOT / package).rglob("*.py"))


def _imported_packages(path):
    """Top-level names of every package a module imports (absolute imports; relative ones stay inside)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_import_detector_np_alone_loads_no_recogniser():
    code = ("import sys, detector_np; bad = [m for m in ('trocr_np', 'tokenizers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("package,forbidden", [("ocr_base", {"detector_np", "trocr_np"}),
                                               ("detector_np", {"trocr_np"})])
def test_lower_floors_never_reach_up(package, forbidden):
    bad = {str(p.relative_to(ROOT)): sorted(_imported_packages(p) & forbidden) for p in _modules(package)}
    assert not {k: v for k, v in bad.items() if v}


def test_recogniser_wing_does_not_import_the_detector():
    wing = [p for p in _modules("trocr_np") if p.stem not in HALL
            and not {"spark", "formats"} & set(p.relative_to(ROOT).parts)]
    assert len(wing) >= 8
    bad = {str(p.relative_to(ROOT)) for p in wing if "detector_np" in _imported_packages(p)}
    assert not bad


def test_no_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in PACKAGES for p in _modules(pkg)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_tests_do_not_skip_on_our_own_modules():
    """An ImportError in our code must fail the suite, not turn tests into skips."""
    bad = []
    for p in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip" and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).split(".")[0] in PACKAGES):
                bad.append(f"{p.name}:{node.lineno}")
    assert not bad
