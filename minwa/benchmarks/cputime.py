"""CPU time for the benchmarks, measured one way so that their figures compare: a process with its
finished children (``getrusage``: loader workers count once they have exited) and a callable per item
on one thread (``time.process_time``). Used by ``minwa bench loader`` and the bench/ scripts.
"""

from __future__ import annotations

import resource
import time


def usage() -> dict:
    """CPU seconds and minor page faults of this process (``main_*``) and of its finished children
    (``workers_*``)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"main_cpu": me.ru_utime + me.ru_stime, "workers_cpu": kids.ru_utime + kids.ru_stime,
            "main_faults": me.ru_minflt, "workers_faults": kids.ru_minflt}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children together."""
    u = usage()
    return u["main_cpu"] + u["workers_cpu"]


def per_item_us(fn, items, passes: int, pick=min) -> float:
    """CPU microseconds per item of ``fn`` over ``items`` on this thread: ``pick`` (``min``, the best;
    or ``statistics.median``) of ``passes`` passes, to 0.1 us."""
    runs = []
    for _ in range(passes):
        t = time.process_time()
        for item in items:
            fn(item)
        runs.append((time.process_time() - t) / len(items) * 1e6)
    return round(pick(runs), 1)
