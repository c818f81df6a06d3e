"""What one worker process holds: settings, database, blobs, the index (if it owns it) and loaded models.

Built once per process after fork (signals.py), never at import. Models are cached per version, so a batch
labelled during a promotion uses one version's encoders and collections throughout, and names that version.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ctax.config import Settings
from ctax.embedding.device import autocast_dtype, resolve_device
from ctax.embedding.ocr import OcrReader, open_reader
from ctax.embedding.space import SharedSpace
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex
from ctax.jobs import EXIT_HUNG, TRAIN_QUEUE, WATCHED_FOR_HANGS
from ctax.labelling.labeller import Labeller
from ctax.labelling.trigger import Thresholds
from ctax.store import leases
from ctax.store.blobs import BlobStore
from ctax.store.models import ModelVersion
from ctax.store.repos import runs, versions, workers
from ctax.store.session import Database
from ctax.taxonomy.catalog import active_taxonomy
from ctax.taxonomy.tree import Taxonomy
from ctax.versions.lifecycle import bootstrap
from ctax.versions.sync import sync_labels
from ctax.worker.finisher import Finisher

log = logging.getLogger(__name__)

MODELS_KEPT = 2  # the active version and one candidate or predecessor


class Runtime:
    def __init__(self, settings: Settings, queues: list[str], owns_index: bool) -> None:
        self.settings = settings
        self.queues = queues
        self.owns_index = owns_index
        self.name = workers.name_prefix(socket.gethostname(), os.getpid()) + "+".join(queues)
        self.db = Database(settings.sqlalchemy_url, lock_wait_s=settings.database_lock_wait_s)
        self.blobs = BlobStore(settings.blob_dir)
        self.device = resolve_device(settings.device)
        self._index: LabelIndex | None = None
        self._spaces: OrderedDict[str, SharedSpace] = OrderedDict()
        self._labellers: dict[tuple[str, Any], Labeller] = {}
        self._ocr: OcrReader | None = None
        self.ocr_backend = "not loaded"  # which OCR backend reads, and why: said at start-up and in `info`
        self._lock = threading.RLock()
        self.ready = False
        self.labelled_since_sweep = 0  # creatives this process labelled since its last novelty sweep
        self.info: dict[str, Any] = {}
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.finisher = Finisher()  # finishes labelled batches behind their encoding (finisher.py)
        self._task: tuple[str, float] | None = None  # the task running now, and when it began (monotonic)

    # -- parts ---------------------------------------------------------------------------------------------
    @property
    def index(self) -> LabelIndex:
        # Whatever this process does with the index waits for the batch being finished: one user at a time.
        self.finisher.settle()
        if self._index is None:
            path = None if self.settings.qdrant_url else self.settings.qdrant_path
            self._index = LabelIndex(
                open_qdrant(self.settings.qdrant_url, path, self.settings.qdrant_api_key),
                self.settings.collection_prefix,
                exemplars_per_label=self.settings.exemplars_per_label,
            )
        return self._index

    @property
    def ocr(self) -> OcrReader | None:
        if not self.settings.ocr_enabled:
            return None
        if self._ocr is None:
            self._ocr, how = open_reader(self.settings.ocr_backend, self.settings.ocr_workers)
            self.ocr_backend = how
            log.info("OCR: %s", how)
        return self._ocr

    def space(self, version_id: str, directory: Path) -> SharedSpace:
        with self._lock:
            if version_id in self._spaces:
                self._spaces.move_to_end(version_id)
                return self._spaces[version_id]
            space = SharedSpace.load(directory, self.device, self.settings.backend,
                                     autocast_dtype(self.device, self.settings.autocast))
            space.size_batches(self.settings.gpu_memory_fraction)
            log.info("model version %s: inference backend %s (%s); batches of %s texts, %s images", version_id,
                     space.backend, space.backend_reason, space.text_batch, space.image_batch)
            self._spaces[version_id] = space
            while len(self._spaces) > MODELS_KEPT:
                dropped, _ = self._spaces.popitem(last=False)
                self._labellers = {k: v for k, v in self._labellers.items() if k[0] != dropped}
            return space

    # -- start-up ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load what this worker needs before it takes work, and report it."""
        self.settings.ensure_dirs()
        self._beat()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="ctax-heartbeat", daemon=True)
        self._heartbeat.start()
        if self.settings.batch_stall_s:
            threading.Thread(target=self._watch_loop, name="ctax-watchdog", daemon=True).start()
        if TRAIN_QUEUE in self.queues:
            with self.db.write() as session:
                runs.fail_interrupted(session)
        if self.owns_index:
            version_id = bootstrap(self.db, self.settings, self.index, self.space, self.blobs, self.ocr)
            labeller = self.labeller()
            self.info = {
                "model_version": version_id,
                "image_tower": labeller.space.image_status,
                "ocr": self.ocr_backend if self.ocr is not None else "disabled",
                "text_tower": labeller.space.config.text_model,
                "backend": labeller.space.backend,
                "backend_reason": labeller.space.backend_reason,
                "label_pipeline": "on" if self.pipelines(labeller) else "off",
            }
            if self.settings.duplicate_groups and self.settings.duplicate_similarity > 0:
                # Here, not in the first batch: the mirror and cells of a million labelled creatives take ~30 s.
                began = time.monotonic()
                self.index.prepare_near_duplicates(version_id)
                self.info["near_duplicate_search_ready_s"] = round(time.monotonic() - began, 1)
            if not labeller.space.image_ready:
                log.warning("image tower: %s", labeller.space.image_status)
        self.ready = True
        self._beat()
        log.info("worker %s ready on %s: %s", self.name, self.device, self.info)

    def pipelines(self, labeller: Labeller) -> bool:
        """Whether `labeller` finishes a batch behind the next one's encoding (CTAX_LABEL_PIPELINE). `auto` does,
        except for torch towers on a CPU: their eager forward takes the GIL between operations, so the finisher's
        Python slowed the encoder more than it overlapped it (bench.backends, end to end / raw 0.53-0.63 pipelined
        against 0.64-0.71 one after the other, docs/benchmarks.md); exported towers and GPUs run outside it."""
        setting = self.settings.label_pipeline
        if setting != "auto":
            return setting == "on"
        return not (labeller.space.backend == "torch" and self.device == "cpu")

    def stop(self) -> None:
        self.finisher.close()  # the last batch stored before the worker says it is gone
        self._stop.set()
        if self._heartbeat is not None:  # a beat in flight would write the row back after we delete it
            self._heartbeat.join(timeout=30)
        with self.db.write() as session:
            workers.remove(session, self.name)

    def task_began(self, name: str) -> None:
        self._task = (name, time.monotonic())

    def task_ended(self) -> None:
        self._task = None

    def hung(self, now: float) -> str | None:
        """What is hung, if the task running now is one of bounded work (jobs.WATCHED_FOR_HANGS), or the batch the
        finisher stores, and it has run longer than CTAX_BATCH_STALL_S; None otherwise."""
        limit = self.settings.batch_stall_s
        running = [self._task] if self._task is not None and self._task[0] in WATCHED_FOR_HANGS else []
        if (finishing := self.finisher.running_since) is not None:
            running.append(("finishing a labelled batch", finishing))
        for what, since in running:
            if limit and now - since > limit:
                return f"{what} has run {now - since:.0f} s, longer than CTAX_BATCH_STALL_S ({limit:g} s)"
        return None

    def _watch_loop(self) -> None:
        # Its own thread: a hung batch can hold a row the heartbeat's renewal of claims waits for.
        while not self._stop.wait(min(self.settings.worker_heartbeat_s, 1.0)):
            if (hung := self.hung(time.monotonic())) is not None:
                self._exit_hung(hung)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.worker_heartbeat_s):
            try:
                self._beat()
            except Exception:  # a missed beat must not kill the worker; the next one retries
                log.exception("heartbeat failed")

    def _exit_hung(self, hung: str) -> None:
        """A task stuck in a wait that never ends (a lock never granted, a server that never answers) keeps this
        process alive and beating, so its claims would be renewed for ever and its queue left unread: the solo pool
        has no time limit to stop it. Exit instead: a process manager restarts the worker, `ctax run` hands its
        creatives on at once (any other manager: within CTAX_LEASE_S)."""
        log.critical("hung: %s; exiting so that the worker is restarted and its work goes on", hung)
        logging.shutdown()
        os._exit(EXIT_HUNG)

    def _beat(self) -> None:
        """Alive, and still holding what it claimed: the claims of a batch that runs longer than the lease stay
        this worker's, while those of a dead worker expire one lease after its last beat."""
        with self.db.write() as session:
            workers.beat(session, self.name, pid=os.getpid(), queues=self.queues, device=self.device,
                         ready=self.ready, info=self.info)
            leases.renew_claims(session, self.name)

    # -- labelling -----------------------------------------------------------------------------------------
    def active_space(self) -> tuple[SharedSpace, Taxonomy]:
        """The active version's encoders and the current taxonomy, without touching the index (any worker)."""
        with self.db.read() as session:
            version = versions.active(session)
            if version is None:
                raise RuntimeError("no active model version yet")
            taxonomy = active_taxonomy(session)
            version_id, directory = version.id, Path(version.artefact_dir)
        return self.space(version_id, directory), taxonomy

    def labeller(self, version: ModelVersion | None = None) -> Labeller:
        """A labeller for the active version (or the one given) and the current taxonomy."""
        with self.db.read() as session:
            version = version or versions.active(session)
            if version is None:
                raise RuntimeError("no active model version yet")
            key = (version.id, (versions.label_set_stamp(session), repr(version.thresholds)))
            cached = self._labellers.get(key)
            if cached is not None:
                return cached
            taxonomy = active_taxonomy(session)
            thresholds = Thresholds.from_json(version.thresholds)
            version_id, directory = version.id, Path(version.artefact_dir)
        space = self.space(version_id, directory)
        if self.owns_index:
            # The taxonomy changed since this labeller was built: embed what changed before labelling with it,
            # so a label created a moment ago (by an admin or a reviewer) is already a candidate.
            sync_labels(self.db, space, self.index)
        labeller = Labeller(
            space,
            self.index,
            taxonomy,
            thresholds,
            top_k=self.settings.top_k,
            exemplar_k=self.settings.exemplar_k,
            ocr=self.ocr,
            traffic_window=self.settings.novelty_traffic_window,
            index_creatives=True,
            duplicate_similarity=thresholds.near_duplicate_similarity(self.settings.duplicate_similarity)
            if self.settings.duplicate_groups else 0.0,
            keeps_for_sweep=self.settings.novelty_sweep_every > 0,
        )
        with self._lock:
            self._labellers = {k: v for k, v in self._labellers.items() if k[0] != version_id}
            self._labellers[key] = labeller
        return labeller


_runtime: Runtime | None = None


def init_runtime(settings: Settings, queues: list[str], owns_index: bool) -> Runtime:
    global _runtime
    _runtime = Runtime(settings, queues, owns_index)
    _runtime.start()
    return _runtime


def running() -> Runtime | None:
    """This process's runtime, or None outside a started worker (a task applied in a test, say)."""
    return _runtime


def current() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker runtime not initialised (the worker_process_init/worker_ready signal sets it)")
    return _runtime
