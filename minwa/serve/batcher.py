"""Dynamic batching: concurrent requests join one forward pass.

Each model instance is one thread. It takes the oldest waiting image, then gathers more until the batch
holds ``max_batch`` images or the oldest has waited ``max_delay`` (Triton's "max queue delay"): under light
load a request waits at most that long, under heavy load batches fill without waiting at all. Several
instances (Triton's instance group) take batches from the one queue side by side, so a request that arrives
while a long batch runs starts on a free instance instead of waiting for that batch to end. Images asking for
different views (scales, flip) share the window but run as separate passes. Decoding happens before an
image is submitted, in the app's decode threads, so it overlaps inference. Admission (how many requests
may wait) is bounded by the app, not here.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Job:
    image: object  # H×W×C uint8
    key: tuple  # (scales, flip): requests with equal keys share a forward pass
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class Done:
    """What a job's future holds: its row of probabilities and how its batch ran."""

    probs: object
    batch_size: int
    queued_s: float
    inference_s: float


class Batcher:
    """``submit(image, key) -> Future[Done]``; ``run(images, key)`` computes one batch (n, K)."""

    def __init__(self, run: Callable, max_batch: int, max_delay_s: float, on_batch: Callable | None = None,
                 instances: int = 1, on_start: Callable | None = None):
        """``on_start()`` runs first in each instance's thread (e.g. to set its share of the CPU threads)."""
        self._run = run
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._on_batch = on_batch or (lambda size, seconds: None)
        self._on_start = on_start or (lambda: None)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=f"minwa-batcher-{i}", daemon=True)
                         for i in range(instances)]

    @property
    def instances(self) -> int:
        return len(self._threads)

    def start(self) -> "Batcher":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Finish the batch in hand, fail whatever still waits (not compute it: a long queue of a slow
        model would hold the shutdown for minutes), end the instances' threads."""
        self._stopping.set()
        for thread in self._threads:  # one end mark per instance: each takes exactly one and ends
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()
        while not self._queue.empty():
            self._refuse(self._queue.get_nowait())

    @staticmethod
    def _refuse(job: Job | None) -> None:
        if job is not None and job.future.set_running_or_notify_cancel():
            job.future.set_exception(RuntimeError("the server is shutting down"))

    def depth(self) -> int:
        """Images waiting for a batch (not counting the batch being computed)."""
        return self._queue.qsize()

    def submit(self, image, key: tuple) -> Future:
        job = Job(image, key)
        self._queue.put(job)
        return job.future

    def _loop(self) -> None:
        self._on_start()
        while True:
            first = self._queue.get()
            if first is None or self._stopping.is_set():
                self._refuse(first)
                return
            jobs, stop = self._gather(first)
            self._compute(jobs)
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """``first`` and whatever joins it within its window (already waiting jobs join without delay)."""
        jobs, deadline = [first], first.enqueued + self.max_delay_s
        while len(jobs) < self.max_batch:
            try:
                left = deadline - time.perf_counter()
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _compute(self, jobs: list[Job]) -> None:
        groups = defaultdict(list)
        for job in jobs:
            if job.future.set_running_or_notify_cancel():  # a client that went away costs nothing
                groups[job.key].append(job)
        for key, group in groups.items():
            start = time.perf_counter()
            try:
                probs = self._run([j.image for j in group], key)
            except Exception as e:  # noqa: BLE001 - handed to the requests; the thread must live on
                for j in group:
                    j.future.set_exception(e)
                continue
            seconds = time.perf_counter() - start
            self._on_batch(len(group), seconds)
            for i, j in enumerate(group):
                j.future.set_result(Done(probs[i], len(group), start - j.enqueued, seconds))
