"""Fixtures of the security tests: a small synthetic CBIS-DDSM tree."""

from __future__ import annotations

import pytest

import morphhr_tf  # noqa: F401  (runtime policy first)


@pytest.fixture(scope="session")
def cbis_tree(tmp_path_factory):
    """6 patients, 256-row images, crops and ROI masks, uid layout."""
    from morphhr_tf.synthetic.cbis_ddsm import generate

    root = tmp_path_factory.mktemp("cbis_security")
    summary = generate(root, patients=6, seed=3, rows=256)
    return root, summary
