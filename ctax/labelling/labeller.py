"""Labelling a batch of creatives: OCR where needed, encode in one pass per tower, query the index, decide.

The worker runs this for every batch, and `ctax eval` runs it too, so the figures it reports are the service's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from ctax.embedding.ocr import OcrReader
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.index.points import TrafficNeighbours, campaign_key
from ctax.index.qdrant import LabelIndex
from ctax.labelling.duplicates import near_duplicates, represent_groups
from ctax.labelling.novelty import LABEL_CANDIDATES, counted_seeds, one_per_campaign, traffic_k
from ctax.labelling.requests import ArrivalTraffic, EncodedBatch, LabelOutcome, LabelRequest, text_source
from ctax.labelling.trigger import TEXT, Decision, Evidence, Thresholds, Trigger
from ctax.taxonomy.tree import Taxonomy
from ctax.vectors import normalise

log = logging.getLogger(__name__)
# What a batch carries in and out (requests.py), imported from here by the worker, `ctax eval` and the benches.
__all__ = ["EncodedBatch", "LabelOutcome", "LabelRequest", "Labeller", "text_source"]


class Labeller:
    def __init__(
        self, space: SharedSpace, index: LabelIndex, taxonomy: Taxonomy, thresholds: Thresholds, *, top_k: int = 5,
        exemplar_k: int = 10, ocr: OcrReader | None = None, traffic_window: int = 0, index_creatives: bool = False,
        duplicate_similarity: float = 0.0, keeps_for_sweep: bool = True,
    ) -> None:
        """index_creatives: keep every labelled creative's vector in the version's creatives collection (what
        search and near-duplicate grouping look through); the service does, an evaluation need not.
        duplicate_similarity: from this cosine a creative is a near-duplicate of an already-labelled one or of an
        earlier one of its batch (0: not looked for). keeps_for_sweep: keep from arrival what the novelty sweep
        reads (label scores, fits without traffic), a window's worth; False where no sweep runs (it searches
        again for whatever was not kept)."""
        self.space = space
        self.index = index
        self.taxonomy = taxonomy
        self.trigger = Trigger(taxonomy, thresholds, top_k=top_k)
        self.exemplar_k = exemplar_k
        self.ocr = ocr
        self.traffic_window = traffic_window
        self.index_creatives = index_creatives
        self._names: dict[int, str] = {}  # label paths as text, for predictions (the taxonomy is fixed per labeller)
        self.duplicate_similarity = duplicate_similarity
        self.keeps_for_sweep = keeps_for_sweep
        # Creative id -> its label scores, kept for the novelty sweep while this labeller (its labels) stands.
        self.swept_label_scores: dict[str, Mapping[int, float]] = {}
        # Creative id -> (exemplar stamp, its fit with no traffic): kept by the sweep while the exemplars stand.
        self.swept_fits: dict[str, tuple[int | None, float | None]] = {}
        # Creative id -> (window's last write, its best traffic similarities below the variant level then): the
        # sweep's bound brings them up to date with the creatives written since (sweep_bound._traffic_ceilings).
        self.swept_ceilings: dict[str, tuple[int, np.ndarray]] = {}

    @property
    def version(self) -> str:
        return self.space.version

    @property
    def reads_traffic(self) -> bool:
        """Whether this version's decisions read the traffic at all: without a learned score over it (a version
        calibrated without labelled data) no traffic search can change one, and neither can the novelty sweep."""
        model = self.trigger.novelty_model
        return self.traffic_window > 0 and model is not None and model.reads_traffic

    def _ocr_texts(self, requests: Sequence[LabelRequest]) -> list[str | None]:
        """The text each creative's image says, read only for creatives that came with an image and no text at
        all; the batch's images that need it are read together (OcrReader.read_many: side by side)."""
        texts = [request.ocr_text for request in requests]
        wanted = [(n, r.image) for n, r in enumerate(requests)
                  if r.ocr_text is None and r.image is not None and not any(t.strip() for t in r.texts)]
        if wanted and self.ocr is not None:
            read = self.ocr.read_many([image for _, image in wanted])
            for (n, _), text in zip(wanted, read, strict=True):
                texts[n] = text
        return texts

    def label(self, requests: Sequence[LabelRequest]) -> list[LabelOutcome]:
        return self.finish(self.encode(requests))

    def encode(self, requests: Sequence[LabelRequest]) -> EncodedBatch:
        """OCR where needed and both towers: the batch's heavy work, which touches neither the index nor the
        database, so a worker may run it for one batch while it finishes the one before (labelling/behind.py)."""
        ocr_texts = self._ocr_texts(requests)
        contents = [CreativeContent(r.texts, r.image, o) for r, o in zip(requests, ocr_texts, strict=True)]
        return EncodedBatch(list(requests), ocr_texts, self.space.encode(contents))

    def finish(self, batch: EncodedBatch) -> list[LabelOutcome]:
        """The index searched, the trigger's decisions, and the index's traffic and creatives brought up to date:
        batches must be finished in the order they arrived (earlier creatives are later ones' traffic)."""
        requests, ocr_texts, encoded = batch.requests, batch.ocr_texts, batch.encoded
        rows = [i for i, item in enumerate(encoded) if item.vector is not None]
        outcomes: list[LabelOutcome | None] = [None] * len(requests)
        for i, item in enumerate(encoded):
            if item.vector is None:
                why = ", ".join(f"{k}: {v}" for k, v in item.modalities.items())
                outcomes[i] = LabelOutcome(
                    requests[i].creative_id, None, ocr_text=ocr_texts[i], error=f"no usable content to label ({why})"
                )
        if rows:
            vectors = np.stack([encoded[i].vector for i in rows])  # type: ignore[misc]
            ids = [requests[i].creative_id for i in rows]
            near = near_duplicates(self.index, self.version, vectors, ids, self.duplicate_similarity)
            members = [root is not None for root in near]
            asserted = [requests[i].asserted_label_id for i in rows]
            label_scores = self.label_scores(vectors, asserted)  # kept for the sweep below
            campaigns = [campaign_key(requests[i].account_id, requests[i].campaign) for i in rows]
            stamp = self.index.exemplars_stamp(self.version)  # before the exemplar search the fits are kept with
            arrival = self.arrival_traffic(vectors, ids, members, campaigns)
            evidence = self.evidence(vectors, asserted, arrival.traffic, arrival.windows,
                                     sources=[text_source(encoded[i].modalities) for i in rows],
                                     label_scores=label_scores)
            decisions = [self.trigger.decide(seen) for seen in evidence]
            # Rerooting leaves the batch's traffic as it was read: the group counted once, by a vector as alike.
            near = represent_groups(near, ids, [d.scores.get("fit") for d in decisions])
            members = [root is not None for root in near]
            for i, decision, root in zip(rows, decisions, near, strict=True):
                outcomes[i] = LabelOutcome(requests[i].creative_id, decision, self.prediction(
                    decision, encoded[i].modalities, encoded[i].used), ocr_text=ocr_texts[i], duplicate_of=root)
            if self.traffic_window > 0 and not all(members):
                # A group counts once as novelty evidence: its members stay out of the traffic window.
                kept = [n for n, member in enumerate(members) if not member]
                self.index.record_traffic(self.version, [ids[n] for n in kept], vectors[kept], self.traffic_window,
                                          [campaigns[n] for n in kept])
                if self.reads_traffic and self.keeps_for_sweep:  # the sweep has nothing to do otherwise
                    self._keep_for_sweep([ids[n] for n in kept], [evidence[n] for n in kept],
                                         [decisions[n] for n in kept], stamp, arrival)
            if self.index_creatives:
                self.index.upsert_creatives(self.version, ids, vectors, [
                    {"label_id": d.decided_label_id, "account_id": requests[i].account_id,
                     "created_at": requests[i].created_at}
                    for i, d in zip(rows, decisions, strict=True)])
        return [outcome for outcome in outcomes if outcome is not None]

    def _keep_for_sweep(self, creative_ids: Sequence[str], evidence: Sequence[Evidence],
                        decisions: Sequence[Decision], stamp: int | None, arrival: ArrivalTraffic) -> None:
        """From arrival, what the novelty sweep would search the index for again (about 0.1 ms a creative each,
        bench.fixed_cost): the label scores, and the fit were no traffic like it (the sweep's bound), valid while
        the exemplars it was read from stand (`stamp`, read before their search; None: not kept), and the
        bound's seeds from the arrival search. A window's worth at most, the oldest dropped first (dicts keep
        insertion order)."""
        scores, fits, ceilings = self.swept_label_scores, self.swept_fits, self.swept_ceilings
        mark, seeds = arrival.mark, arrival.seeds
        for creative_id, seen, decision in zip(creative_ids, evidence, decisions, strict=True):
            scores.pop(creative_id, None)
            scores[creative_id] = seen.label_scores  # the batch's own dict, read and never changed after
            fits.pop(creative_id, None)
            if stamp is not None:
                fits[creative_id] = (stamp, self.trigger.fit_without_traffic(seen, decision.scores.get("fit")))
            ceilings.pop(creative_id, None)
            if mark is not None and creative_id in seeds:
                ceilings[creative_id] = (mark, seeds[creative_id])
        for known in (scores, fits, ceilings):
            for stale in list(islice(known, max(len(known) - self.traffic_window, 0))):
                del known[stale]

    def label_scores(self, vectors: np.ndarray, asserted: Sequence[int | None]) -> list[dict[int, float]]:
        """Per row, the label candidates' similarities and the asserted label's lineage's (they may rank below the
        candidates): what a decision reads from the labels, fixed for a creative while this labeller stands."""
        label_hits = self.index.nearest(self.version, vectors, LABEL_CANDIDATES)
        scores = [{hit.label_id: hit.score for hit in row} for row in label_hits]
        asserted_rows = [n for n, label_id in enumerate(asserted) if label_id in self.taxonomy]
        if asserted_rows:
            only = [self.taxonomy.subtree(asserted[n]) for n in asserted_rows]  # type: ignore[arg-type]
            hits = self.index.nearest(self.version, vectors[asserted_rows], 64, only=only)
            for n, row in zip(asserted_rows, hits, strict=True):
                scores[n].update({h.label_id: h.score for h in row})
        return scores

    def decide(
        self, vectors: np.ndarray, asserted: Sequence[int | None], traffic: Sequence[Sequence[float]],
        windows: Sequence[int], sources: Sequence[str] | None = None,
        label_scores: Sequence[Mapping[int, float]] | None = None,
    ) -> list[Decision]:
        """The trigger's decision for creatives already encoded by this version (arguments as `evidence`)."""
        return [self.trigger.decide(e) for e in self.evidence(vectors, asserted, traffic, windows, sources,
                                                                label_scores)]

    def evidence(
        self, vectors: np.ndarray, asserted: Sequence[int | None], traffic: Sequence[Sequence[float]],
        windows: Sequence[int], sources: Sequence[str] | None = None,
        label_scores: Sequence[Mapping[int, float]] | None = None,
    ) -> list[Evidence]:
        """What the trigger decides from, per row: asserted label, traffic similarities, the size of the window
        they came from, where its text came from (TEXT by default), label scores (`label_scores` when the caller
        kept them) and exemplars from the index."""
        scores_by_row = self.label_scores(vectors, asserted) if label_scores is None else label_scores
        exemplar_hits = self.index.nearest_exemplars(self.version, vectors, self.exemplar_k)
        return [Evidence(label_scores=scores, exemplars=[(hit.label_id, hit.score) for hit in exemplar_hits[n]],
                         asserted_label_id=asserted[n], traffic=traffic[n], traffic_window=windows[n],
                         text_source=sources[n] if sources is not None else TEXT)
                for n, scores in enumerate(scores_by_row)]

    def fetch_limit(self, window: int) -> int:
        """Neighbours fetched from a window of `window`: copies are dropped later (novelty.DUPLICATE_SIMILARITY),
        so enough to leave traffic_k after them."""
        return 2 * traffic_k(window, self.trigger.thresholds.traffic_reference)

    def full_window(self) -> int:
        """How many recent creatives a creative of the traffic window is judged against at a sweep: all but itself."""
        return max(self.index.count_traffic(self.version) - 1, 0)

    def full_window_traffic(
        self, vectors: np.ndarray, creative_ids: Sequence[str], campaigns: Sequence[str | None] | None = None,
    ) -> tuple[list[list[float]], list[int]]:
        """Each creative's similarities to the whole traffic window (itself aside), arrivals after it included,
        and the window's size: what the novelty sweep re-decides with."""
        window = self.full_window()
        near = self._traffic_neighbours(vectors, self.fetch_limit(window), creative_ids, campaigns)
        return [self._campaigns(np.asarray(s), units, alone) for s, units, alone in near], [window] * len(creative_ids)

    def _traffic_neighbours(
        self, vectors: np.ndarray, limit: int, creative_ids: Sequence[str], campaigns: Sequence[str | None] | None
    ) -> list[TrafficNeighbours]:
        """Neighbours in the traffic window (none of the creative's own campaign), with their unit vectors and
        which are lonely at the variant level only where the version counts each campaign once: the others never
        read them, and a server would send the vectors."""
        thresholds = self.trigger.thresholds
        once = thresholds.campaigns_once
        return self.index.traffic_neighbours(self.version, vectors, limit, exclude=creative_ids, with_vectors=once,
                                             campaigns=campaigns, pair_level=thresholds.variant_level if once else None)

    def _campaigns(self, scores: np.ndarray, units: np.ndarray | None, lonely: np.ndarray | None = None,
                   fresh: np.ndarray | None = None) -> list[float]:
        """The traffic the trigger reads from neighbours' similarities (best first), unit vectors, loneliness."""
        thresholds = self.trigger.thresholds
        if units is None or not thresholds.campaigns_once:
            return [float(s) for s in scores]
        return one_per_campaign(scores, units, thresholds.variant_level, lonely, fresh)

    def arrival_traffic(
        self, vectors: np.ndarray, creative_ids: Sequence[str], members: Sequence[bool] = (),
        campaigns: Sequence[str | None] | None = None,
    ) -> ArrivalTraffic:
        """Similarities of each creative to the recent creatives before it, and how many those were: the
        version's traffic window and the earlier ones of this batch, as if the batch had been labelled one by one.
        Earlier members of duplicate groups (`members[m]`) are not in the window, so they are not counted here;
        nor are creatives of its own campaign (`campaigns[m]`, as index.points.campaign_key gives it). Where the
        sweep's bound is kept, its seeds too, for the creatives that enter the window (not the members)."""
        if not self.reads_traffic:
            return ArrivalTraffic([[] for _ in creative_ids], [0] * len(creative_ids))
        stored = self.index.count_traffic(self.version)
        limit = self.fetch_limit(stored + len(creative_ids))
        mark = self.index.traffic_last_write(self.version) if self.keeps_for_sweep else None
        near = self._traffic_neighbours(vectors, limit, creative_ids, campaigns)
        is_member = np.asarray(members, dtype=bool) if members else np.zeros(len(creative_ids), dtype=bool)
        seeds: dict[str, np.ndarray] = {}
        if mark is not None:  # the sweep's bound starts from this search (sweep_bound._traffic_ceilings)
            entering = np.flatnonzero(~is_member).tolist()
            # Fewer than asked: the window held no more (local mode, where a mark is kept, drops only its own).
            found = counted_seeds([near[n].similarities for n in entering], self.trigger.thresholds.variant_level,
                                  limit)
            seeds = {creative_ids[n]: row for n, row in zip(entering, found, strict=True)}
        unit = normalise(np.asarray(vectors, dtype=np.float32))
        within = (unit @ unit.T).astype(np.float64)
        ids = np.asarray(creative_ids, dtype=object)
        named = np.asarray(campaigns if campaigns is not None else [None] * len(creative_ids), dtype=object)
        out = []
        for n, (scores, units, lonely) in enumerate(near):
            # The earlier creatives of this batch (a creative twice in one batch is not its own neighbour; earlier
            # members of duplicate groups are not in the window, so not counted either).
            earlier = (ids[:n] != ids[n]) & ~is_member[:n] & ((named[:n] != named[n]) | (named[n] is None))
            merged = np.concatenate([np.asarray(scores, dtype=np.float64), within[n, :n][earlier]])
            best = np.argsort(-merged, kind="stable")[:limit]
            fellows = None if units is None else np.concatenate([units, unit[:n][earlier]])[best]
            fresh = best >= len(scores)  # the window knows nothing of this batch's creatives' pairs
            alone = None if lonely is None else np.concatenate([lonely, np.zeros(len(merged) - len(scores), bool)])
            out.append(self._campaigns(merged[best], fellows, None if alone is None else alone[best], fresh))
        counted = [0, *np.cumsum(~is_member).tolist()]
        return ArrivalTraffic(out, [stored + int(counted[n]) for n in range(len(creative_ids))], mark, seeds)

    def _name(self, label_id: int) -> str:
        if (name := self._names.get(label_id)) is None:
            name = self._names[label_id] = self.trigger._name(label_id)
        return name

    def prediction(self, decision: Decision, modalities: dict[str, str], used: list[str]) -> dict[str, Any]:
        name, decided = self._name, decision.decided_label_id
        return {
            "model_version": self.version,
            "top_k": [{"label_id": r.label_id, "path": name(r.label_id), "score": round(r.score, 5),
                       "similarity": round(r.similarity, 5), "exemplar_share": round(r.exemplar_share, 5)}
                      for r in decision.ranked],
            "decided_label": {"label_id": decided, "path": name(decided)} if decided is not None else None,
            "flag": decision.flag,
            "scores": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in decision.scores.items()},
            "reasons": decision.reasons,
            "modalities": modalities,
            "modalities_used": used,
        }
