"""Independent tasks on both cores: threads with torch's intra-op threads shared out among them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch


def in_parallel(tasks: list, workers: int) -> list:
    """Run zero-argument tasks on ``workers`` threads (torch ops release the GIL), results in order,
    with torch's intra-op threads shared out meanwhile: more threads than cores stall each other."""
    if workers <= 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // workers))
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="dsg-task") as pool:
            futures = [pool.submit(t) for t in tasks]
            return [f.result() for f in futures]
    finally:
        torch.set_num_threads(threads)
