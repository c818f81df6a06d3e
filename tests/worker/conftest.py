from __future__ import annotations

from collections.abc import Iterator

import pytest

from ctax.jobs import LABEL_QUEUE
from ctax.worker.runtime import Runtime


@pytest.fixture
def runtime(settings, db, pitt_labels) -> Iterator[Runtime]:
    """A labelling worker's runtime in this process: real MiniLM, Qdrant local mode, the Pitt taxonomy."""
    rt = Runtime(settings, [LABEL_QUEUE], owns_index=True)
    rt.start()
    yield rt
    rt.stop()
    if rt._index is not None:
        rt._index.client.close()
