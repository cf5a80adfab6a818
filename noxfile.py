"""Sessions: ``nox -s tests`` (set up everything, run the tests), ``nox -s bench`` (set up
everything, run the standard benchmark on the embedded data and write the report), ``nox -s gpu``
(set up everything, prove every GPU path: ``python -m bench.gpucheck``).

Both install the project with every optional pipeline into their own virtual environment,
after the system libraries FFCV compiles against (installed with apt-get when missing and
this user may; otherwise the exact command is printed and FFCV is left out).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"  # pip, which finds torch on this machine's disk

APT_PACKAGES = ("libopencv-dev", "libturbojpeg0-dev", "pkg-config")
PKG_CONFIG_NAMES = ("opencv4", "libturbojpeg")


def _have_ffcv_system_libraries() -> bool:
    if shutil.which("pkg-config") is None:
        return False
    return subprocess.run(["pkg-config", "--exists", *PKG_CONFIG_NAMES], check=False).returncode == 0


def ensure_system_packages(session: nox.Session) -> bool:
    """Make sure FFCV's build dependencies are here; True if they are."""
    if _have_ffcv_system_libraries():
        return True
    command = "apt-get install -y --no-install-recommends " + " ".join(APT_PACKAGES)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.warn(f"FFCV needs OpenCV and libjpeg-turbo headers; install them with: sudo {command}  (continuing without FFCV)")
        return False
    session.log("installing FFCV's system libraries with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(*command.split(), external=True, env=env)
    return _have_ffcv_system_libraries()


INSTALL_GIB = 8  # a fresh environment: torch's CUDA build (5.6 GB), DALI, FFCV, jupyter; the tests add about 2 GB in the temp folder


def ensure_disk_space(session: nox.Session) -> None:
    """Stop with one line before a fresh install that cannot fit (pip would fail half way, 'No space left on device')."""
    venv = session.virtualenv.location
    if glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "torch")):
        return  # reused with -r: torch is in already
    free = shutil.disk_usage(os.path.dirname(venv) or ".").free / 2**30
    if free < INSTALL_GIB:
        session.error(f"{os.path.dirname(venv)}: {free:.1f} GiB free, and a fresh environment needs about {INSTALL_GIB} GiB "
                      "(torch's CUDA build, DALI, FFCV); free some space and run again")


def install_project(session: nox.Session, *extras: str) -> None:
    ensure_disk_space(session)
    wanted = ["dali", "notebooks", *extras]
    if ensure_system_packages(session):
        wanted.append("ffcv")
    session.install("--upgrade", "pip")
    session.install("-e", f".[{','.join(wanted)}]")


BROWSER_APT_PACKAGES = ("chromium", "chromium-driver")
CHROMEDRIVER = "/usr/bin/chromedriver"


def ensure_browser(session: nox.Session) -> None:
    """Debian's chromium and chromedriver, for the test that opens the HTML report (skipped without them)."""
    if os.path.exists(CHROMEDRIVER) and shutil.which("chromium"):
        return
    command = "apt-get install -y --no-install-recommends " + " ".join(BROWSER_APT_PACKAGES)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.warn(f"the HTML report's browser test needs chromium; install it with: sudo {command}  (that test is skipped without it)")
        return
    session.log("installing chromium and chromedriver with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(*command.split(), external=True, env=env)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Install everything and run the test suite (pass pytest arguments after --)."""
    ensure_browser(session)
    install_project(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Install everything and run the standard benchmark suite on the embedded data (args go to bench.suite)."""
    install_project(session)
    session.run("python", "-m", "bench.suite", *session.posargs)


@nox.session(python="3.11")
def gpu(session: nox.Session) -> None:
    """Install everything and prove every GPU path in one run (python -m bench.gpucheck; args go to it):
    the gpu-marked tests, a throughput point per pipeline, accuracy with a resume, relu-tanh, and
    two-GPU model-parallel and NCCL data-parallel when there are two GPUs; one pass/fail table."""
    install_project(session, "test")
    session.run("python", "-m", "bench.gpucheck", *session.posargs)
