"""Repository-wide pytest setup: GPU tests skip cleanly on machines without CUDA, heavy
tests unless FEATUREKIT_HEAVY=1."""
import os

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    gpu = heavy = None
    for item in items:
        if "gpu" in item.keywords:
            if gpu is None:
                gpu = _has_cuda()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "heavy" in item.keywords:
            if heavy is None:
                heavy = os.environ.get("FEATUREKIT_HEAVY") == "1"
            if not heavy:
                item.add_marker(pytest.mark.skip(reason="heavy: set FEATUREKIT_HEAVY=1"))
