"""Issue 21: `featurekit diff SPEC -- --output=PATH` passed the option to git, which wrote PATH.
A revision that looks like an option is a usage error (exit 2), and git is told where its
options end."""
import subprocess

import pytest

CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}


@pytest.fixture
def repo(proj):
    proj.write(CHEAP, [{"id": 1, "question": "q"}])
    env = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "spec.yaml"], [*env, "commit", "-q", "-m", "spec"]):
        subprocess.run(["git", *args], cwd=proj.root, check=True, capture_output=True)
    return proj


@pytest.mark.parametrize("rev", ["--output=written.txt", "-p", "--output", "HEAD:../../etc/passwd"])
def test_a_revision_that_is_an_option_is_refused_and_git_writes_nothing(repo, rev):
    done = repo.cli("diff", "spec.yaml", "--", rev)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "is not a git revision" in done.stderr and "options are not passed to git" in done.stderr
    assert not (repo.root / "written.txt").exists()
    second = repo.cli("diff", "spec.yaml", "HEAD", "--", rev)
    assert second.returncode == 2 and not (repo.root / "written.txt").exists(), second.stderr


def test_a_plain_revision_still_diffs(repo):
    done = repo.cli("diff", "spec.yaml", "HEAD")
    assert done.returncode == 0, done.stderr
