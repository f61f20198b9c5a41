"""The documentation builds without a warning, and the user guide shows only what is true.

The build runs the command the guide gives (into a temporary folder); the guide's ``>>>``
examples run as written, on the bundled demo photos, in a fresh folder.
"""

import doctest
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDE = DOCS / "guide.md"
# The packages of the flowchart, each with a section in the API reference.
PACKAGES = (
    "images",
    "datasets",
    "traditional",
    "deep",
    "fusion",
    "search",
    "explanations",
    "serve",
    "extraction",
)
# The pages whose measured numbers the guide may quote.
MEASURED = ("benchmarks.md", "traditional.md", "deep.md", "fusion.md")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the HTML documentation once, offline, with warnings as errors."""
    out = tmp_path_factory.mktemp("docs") / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    done = subprocess.run(
        [*command, str(DOCS), str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    return done, out


def test_no_page_takes_a_name_sphinx_reserves():
    """Sphinx writes its own genindex, modindex and search pages; a page so named is lost."""
    taken = [
        page.name for page in DOCS.glob("*.md") if page.stem in {"genindex", "modindex", "search"}
    ]
    assert taken == [], f"rename {taken}: Sphinx reserves these names for its own pages"


def test_docs_build_without_warnings(built):
    done, _ = built
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "package",
    ["fusionrec", *(f"fusionrec.{name}" for name in PACKAGES)],
)
def test_api_reference_documents_every_public_class_and_function(built, package):
    """Under the package that exports it, or under ``fusionrec`` where that exports it too."""
    _, out = built
    page = (out / "api" / "index.html").read_text()
    module = import_module(package)
    public = [name for name in module.__all__ if callable(getattr(module, name))]
    missing = [
        name
        for name in public
        if f'id="{package}.{name}"' not in page and f'id="fusionrec.{name}"' not in page
    ]
    assert public
    assert missing == []


def _guide_pycon() -> str:
    """The guide with everything outside its ``pycon`` blocks blanked, so line numbers hold."""
    kept, inside = [], False
    for line in GUIDE.read_text().splitlines():
        fence = line.startswith("```")
        if fence:
            inside = not inside and line.strip() == "```pycon"
        kept.append(line if inside and not fence else "")
    return "\n".join(kept)


def test_guide_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    examples = doctest.DocTestParser().get_doctest(_guide_pycon(), {}, "guide.md", str(GUIDE), 0)
    assert len(examples.examples) > 10
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(examples, out=report.append)
    assert runner.failures == 0, "".join(report)


def _decimals(text: str) -> set[str]:
    return set(re.findall(r"\d+\.\d+", text))


def test_guide_quotes_only_recorded_numbers():
    text = GUIDE.read_text()
    choosing = text[text.index("## Choosing") :]
    choosing = re.sub(r"^```.*?^```", "", choosing, flags=re.S | re.M)
    recorded = set().union(*(_decimals((DOCS / page).read_text()) for page in MEASURED))
    assert _decimals(choosing) - recorded == set()


def test_guide_names_existing_paths():
    root = DOCS.parent
    paths = set(re.findall(r"`(fusionrec/[\w/.]*)`", GUIDE.read_text()))
    assert paths
    assert [path for path in sorted(paths) if not (root / path).exists()] == []
