"""One home for "torch on N threads for this block".

torch's intra-op threads spin while they wait; on a machine whose cores run physics (collection,
evaluation, report workers) they slow both the policy and the simulation several-fold, so those
loops run the policy on one thread and give the caller's setting back afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None = 1) -> Iterator[None]:
    """Run the block with torch on ``n`` intra-op threads, then restore the caller's count.

    ``n=None`` leaves the setting alone. torch is not imported by this: if nothing has imported
    it yet, there is no policy to run and the block runs unchanged.
    """
    torch = sys.modules.get("torch")
    if n is None or torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
