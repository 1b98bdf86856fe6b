"""Shared fixtures: small real datasets, loaded once per session."""

from __future__ import annotations

import pytest

from hpsearch.data import Data, load_data


@pytest.fixture(scope="session")
def digits() -> Data:
    """scikit-learn's digits, split and normalized as the default dataset is."""
    return load_data("digits")
