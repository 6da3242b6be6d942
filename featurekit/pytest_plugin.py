"""pytest fixtures for plugin authors (loaded through the ``pytest11`` entry point).

``featurekit_project``: a `featurekit.testing.TestProject` in a temporary folder.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def featurekit_project(tmp_path):
    from .testing import TestProject
    return TestProject(tmp_path / "project")
