"""LabelIndex over real Qdrant local mode: versions, atomic alias swaps, exemplars, and the one-process lock."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ctax.taxonomy.errors import IndexLocked, NotFound
from ctax.taxonomy.index import LabelIndex, open_qdrant


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_versions_labels_exemplars_and_alias_swap(tmp_path) -> None:
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    for version in ("v1", "v2"):
        index.ensure_version(version, 3)
    index.upsert_labels("v1", [1, 2], np.stack([unit(1, 0, 0), unit(0, 1, 0)]), [{"path": "A"}, {"path": "B"}])
    index.upsert_labels("v2", [1, 2], np.stack([unit(0, 1, 0), unit(1, 0, 0)]), [{"path": "A"}, {"path": "B"}])
    query = np.stack([unit(1, 0.1, 0)])
    assert index.nearest("v1", query, 2)[0][0].label_id == 1
    assert index.nearest("v2", query, 2)[0][0].label_id == 2
    assert index.nearest("v1", query, 2, only=[[2]])[0][0].label_id == 2

    with pytest.raises(NotFound):
        index.activate("v3")
    index.activate("v1")
    assert index.active_version() == "v1"
    index.activate("v2")
    assert index.active_version() == "v2"
    aliases = {a.alias_name: a.collection_name for a in index.client.get_aliases().aliases}
    assert aliases == {"t_labels": "t_labels_v2", "t_exemplars": "t_exemplars_v2"}

    ids = ["0" * 31 + "1", "f" * 32]
    index.upsert_exemplars("v1", ids, [1, 2], np.stack([unit(1, 0, 0), unit(0, 0, 1)]))
    assert index.exemplar_labels("v1") == {ids[0]: 1, ids[1]: 2}
    hits = index.nearest_exemplars("v1", query, 5)[0]
    assert hits[0].creative_id == ids[0] and hits[0].label_id == 1
    index.delete_exemplars("v1", [ids[0]])
    index.delete_labels("v1", [2])
    assert index.count_exemplars("v1") == 1 and list(index.label_payloads("v1")) == [1]
    index.drop_version("v1")
    assert not index.has_version("v1")


def test_a_second_process_cannot_open_the_embedded_index(tmp_path) -> None:
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path))
    index.ensure_version("v1", 3)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ctax.taxonomy.errors import IndexLocked\n"
        "from ctax.taxonomy.index import open_qdrant\n"
        "try:\n"
        f"    open_qdrant(None, Path({str(path)!r}))\n"
        "except IndexLocked as exc:\n"
        "    print(exc.message); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "CTAX_QDRANT_URL" in result.stdout and "worker owns it" in result.stdout
    assert issubclass(IndexLocked, Exception) and IndexLocked("x").status_code == 503
