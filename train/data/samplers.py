"""Batch samplers.

``RankingBatchSampler`` feeds the TReS relative-ranking loss (``tres_ranking``), which compares the
samples with the highest, second-highest, lowest and second-lowest label of each batch. When the
highest (or lowest) label is shared by two samples, "highest" is an arbitrary pick and that
triplet carries no ranking information; synthetic labels (``1 - 0.18 * level``, six values) tie
almost always in a random batch. This sampler yields batches whose highest label and whose lowest
label are each held by exactly one sample: ``s_max > s'_max`` and ``s'_min > s_min``.

That constraint caps how often extreme labels can appear: a valid batch holds at most one sample
of the data set's lowest label and one of its highest. With discrete labels an epoch therefore
cannot show every sample exactly once; the sampler keeps the epoch length of a plain sampler and
lets the surplus of a batch's extreme labels wait for a later pass.

Strategy (per epoch, deterministic in ``seed`` and ``epoch``):

1. A stream of indices: a random permutation of the data set, followed by a fresh permutation
   whenever it runs out (so an epoch may start a second pass).
2. Each batch takes the next ``batch_size`` distinct indices of the stream: a random batch.
3. Repair: while the batch's highest (lowest) label is held by more than one sample, one of those
   samples is set aside and replaced by the next stream index whose label is neither the batch's
   highest nor its lowest. Each replacement removes a duplicate or brings in a new, unique
   extreme, so it takes at most ``batch_size`` replacements. Indices skipped over stay in the
   stream for the next batch; set-aside ones wait for the stream's next permutation.
4. An epoch has ``len(labels) // (batch_size * world_size)`` batches per rank (``drop_last``), or
   that number rounded up (``drop_last=False``; every batch is still full, like the padding of
   ``DistributedSampler``). Distributed: every rank computes the same global list and takes every
   ``world_size``-th batch from ``rank``; ``batch_size`` is the per-rank batch size.

Labels are compared exactly (the same formula gives the same float). Possible only when a batch
can have ``batch_size - 2`` samples strictly between the data set's lowest and highest label;
otherwise the constructor raises ConfigError.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from saliq.errors import ConfigError

MIN_RANKING_BATCH = 4  # highest, second-highest, second-lowest, lowest


class RankingBatchSampler(Sampler[list[int]]):
    """Index batches with a unique highest and a unique lowest label (for ``tres_ranking``).

    Use as ``DataLoader(dataset, batch_sampler=RankingBatchSampler(labels, 16, seed=0))`` and call
    ``set_epoch(epoch)`` before each epoch. ``labels[i]`` is sample i's quality label.
    """

    def __init__(
        self,
        labels: Sequence[float] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        values = np.asarray(labels, dtype=np.float64)
        where = "RankingBatchSampler"
        if values.ndim != 1:
            raise ConfigError(f"{where}: labels must be 1-D, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"{where}: labels contain nan/inf; fix the label source")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ConfigError(f"{where}: batch_size must be an int, got {batch_size!r}")
        if batch_size < MIN_RANKING_BATCH:
            raise ConfigError(
                f"{where}: batch_size {batch_size} < {MIN_RANKING_BATCH}; the ranking loss needs "
                "the top-2 and bottom-2 samples of a batch"
            )
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"{where}: need 0 <= rank < world_size, got {rank=} {world_size=}")
        if values.size < batch_size * world_size:
            raise ConfigError(
                f"{where}: {values.size} samples cannot fill one batch of {batch_size} on each "
                f"of {world_size} ranks; lower batch_size"
            )
        distinct = np.unique(values)
        if distinct.size < 3:
            raise ConfigError(
                f"{where}: labels take only {distinct.size} distinct values {distinct.tolist()}; "
                "a batch with a unique highest and lowest label needs at least 3: add label "
                "levels, or use a plain shuffled sampler and drop tres_ranking"
            )
        inner = int(np.count_nonzero((values > distinct[0]) & (values < distinct[-1])))
        if inner + 2 < batch_size:
            raise ConfigError(
                f"{where}: only {inner} samples lie strictly between the lowest and highest "
                f"label, so no batch of {batch_size} can have a unique top and bottom; use "
                f"batch_size <= {inner + 2}"
            )
        self.labels = values
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.set_aside = 0  # samples set aside by repairs in the last planned epoch
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle (call before iterating, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.plan(self.epoch)

    def __len__(self) -> int:
        return self._n_global() // self.world_size

    def _n_global(self) -> int:
        per_step = self.batch_size * self.world_size
        steps = self.labels.size / per_step
        return (math.floor(steps) if self.drop_last else math.ceil(steps)) * self.world_size

    def plan(self, epoch: int) -> list[list[int]]:
        """This rank's batches for ``epoch`` (cached for the latest epoch asked)."""
        if self._cache is None or self._cache[0] != epoch:
            batches = self._global_plan(epoch)
            self._cache = (epoch, batches[self.rank :: self.world_size])
        return self._cache[1]

    def _global_plan(self, epoch: int) -> list[list[int]]:
        stream = _Stream(self.labels, np.random.default_rng([self.seed, epoch]))
        batches = [self._one_batch(stream) for _ in range(self._n_global())]
        self.set_aside = stream.set_aside
        return batches

    def _one_batch(self, stream: _Stream) -> list[int]:
        lab = self.labels
        members: list[int] = []
        while len(members) < self.batch_size:
            members.append(stream.take(members, lambda _v: True))
        while True:
            values = lab[members]
            hi, lo = values.max(), values.min()
            dup = next((v for v in (hi, lo) if np.count_nonzero(values == v) > 1), None)
            if dup is None:
                return members
            # Set aside the last sample holding the duplicated extreme; any label other than the
            # batch's two extremes makes progress (removes a duplicate or is a new unique extreme).
            slot = max(i for i, v in enumerate(values) if v == dup)
            members.pop(slot)
            stream.set_aside += 1
            members.append(stream.take(members, lambda v, hi=hi, lo=lo: v != hi and v != lo))


class _Stream:
    """Shuffled passes over the indices; ``take`` consumes the first acceptable unused one."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator) -> None:
        self.labels = labels.tolist()  # Python floats: the scan below is per element
        self.rng = rng
        self.order: list[int] = []
        self.used: list[bool] = []
        self.head = 0  # every position before head is used
        self.set_aside = 0
        self._extend()

    def _extend(self) -> None:
        perm = self.rng.permutation(len(self.labels)).tolist()
        self.order.extend(perm)
        self.used.extend([False] * len(perm))

    def take(self, members: list[int], accept) -> int:
        taken = set(members)
        pos, passes = self.head, 0
        while True:
            if pos == len(self.order):
                passes += 1
                if passes > 2:  # a full fresh pass had no acceptable index
                    raise RuntimeError(
                        "RankingBatchSampler: no sample can repair this batch; the label "
                        "distribution is too concentrated for this batch_size"
                    )
                self._extend()
            if not self.used[pos]:
                index = self.order[pos]
                if index not in taken and accept(self.labels[index]):
                    self.used[pos] = True
                    while self.head < len(self.order) and self.used[self.head]:
                        self.head += 1
                    return index
            pos += 1


class GroupBatchSampler(Sampler[list[int]]):
    """Batches of whole groups: items ``g * group_size ... (g + 1) * group_size - 1`` are one
    group (frames of one content, data.group_size) and always share a batch, in order.

    Per epoch (deterministic in ``seed`` and ``epoch``) the groups are shuffled and cut into
    batches of ``batch_size // group_size`` groups; an incomplete last batch is dropped.
    Distributed: every rank computes the same list and takes every ``world_size``-th batch.
    """

    def __init__(
        self,
        n_items: int,
        group_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        where = "GroupBatchSampler"
        if group_size < 1 or batch_size % group_size:
            raise ConfigError(
                f"{where}: the batch size {batch_size} must be a multiple of data.group_size "
                f"{group_size} (batches hold whole groups)"
            )
        if n_items % group_size:
            raise ConfigError(f"{where}: {n_items} items are not whole groups of {group_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"{where}: need 0 <= rank < world_size, got {rank=} {world_size=}")
        self.groups = n_items // group_size
        self.per_batch = batch_size // group_size
        if self.groups < self.per_batch * world_size:
            raise ConfigError(
                f"{where}: {self.groups} groups cannot fill one batch of {self.per_batch} groups "
                f"on each of {world_size} processes; add photos or copies_per_photo"
            )
        self.group_size, self.seed, self.rank, self.world_size = group_size, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.groups // (self.per_batch * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.groups)
        batches = [
            order[b * self.per_batch : (b + 1) * self.per_batch]
            for b in range(len(self) * self.world_size)
        ]
        for chosen in batches[self.rank :: self.world_size]:
            yield [int(g) * self.group_size + m for g in chosen for m in range(self.group_size)]
