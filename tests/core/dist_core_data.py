"""The batch shared by the distributed core test and its workers."""

import torch

from geoharmony.gh.allocation import AllocationQueue, Allocator, partial, relaxed
from geoharmony.gh.sinkhorn import sinkhorn

# Allocations run in distributed mode by the workers and on the whole batch by the test.
ALLOCATIONS = {
    "balanced": lambda x, **kw: sinkhorn(x, **kw),
    "relaxed": lambda x, **kw: relaxed(x, tau=0.3, **kw),
    "partial": lambda x, **kw: partial(x, 0.6, tau=0.3, **kw).targets,
    # A second pass with the neighbours' targets: neighbours are searched over every rank's rows.
    "relaxed_affinity": lambda x, distributed=False: Allocator(
        "relaxed", tau=0.3, affinity=0.5, neighbours=3
    )(x, None, distributed),
}
QUEUE_BATCHES = 2  # batches held by the allocation queue


def full_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    b, d, k = 12, 8, 5
    prior = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return {
        "b": b,
        "d": d,
        "k": k,
        "z1": torch.randn(b, d, generator=g, dtype=torch.float64),
        "z2": torch.randn(b, d, generator=g, dtype=torch.float64),
        "logits": torch.rand(b, k, generator=g, dtype=torch.float64) * 2 - 1,
        "prior": prior / prior.sum(),
        # Two views of 4 consecutive batches, so a queue of 2 fills and wraps around.
        "steps": torch.rand(4, 2, b, k, generator=g, dtype=torch.float64) * 2 - 1,
    }


def queued_targets(
    steps: torch.Tensor, allocate, rank: int = 0, world: int = 1, distributed: bool = False
) -> list:
    """Current-batch targets of each step on rank ``rank`` of ``world`` (contiguous slices of
    the batch), allocating over its rows and its share of the queued global batches."""
    _, views, b, k = steps.shape
    queue = AllocationQueue(QUEUE_BATCHES, b, k, num_views=views, shards=world, dtype=steps.dtype)
    rows = slice(rank * b // world, (rank + 1) * b // world)
    out = []
    for logits in steps:
        current = logits[:, rows]
        joint = torch.cat([current, queue.queued(rank)], dim=1)  # as GHLoss.compute does
        out.append(allocate(joint, distributed=distributed)[:, : current.shape[1]])
        queue.push(logits)  # every rank queues the global batch
    return out
