"""A failing rank must stop the job with its name, not leave the others waiting in a collective forever.

Three mechanisms, all through the rendezvous store torchrun already runs (so nothing new to deploy):

- every rank registers ``host:pid`` and bumps a heartbeat counter from a daemon thread;
- a monitor thread on every rank watches the others' counters; a rank silent for ``timeout_s`` (killed,
  frozen, node lost) is named on stderr and this process exits, instead of waiting in gloo/NCCL;
- the same thread publishes this rank's progress (``note_progress``: twice a step, when the batch is in
  hand and when the step is done). A rank that is alive but stuck (a hung data loader, a deadlock in
  its own code) still beats, so it is found by its progress: when neither it nor a rank ahead of it
  has moved for ``STALL_FRACTION * timeout_s`` (before the collective's own timeout fires, which on
  NCCL kills the process without saying who), both name the stuck rank and where it stopped, and exit;
- :func:`failure_guard` wraps the training loop: when a collective fails (a peer vanished) it looks up
  which rank is gone (dead pid on this host, a posted error, or a stopped heartbeat) and raises a
  one-line :class:`MinwaError` naming it; a rank that raises itself posts its error for the others.

torch's own ``timeout`` on the process group still bounds every collective; this adds the *who*.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time

import torch.distributed as dist

from minwa.errors import MinwaError

_PREFIX = "minwa/"
_state: dict = {}
_progress = [0]  # this rank's progress marks: 2 per training step (batch in hand, step done)
STALL_FRACTION = 0.8  # of timeout_s: a rank behind the others and still for this long is named


def note_progress() -> None:
    """Mark progress on this rank: call when a step's batch is in hand and again when the step is done.
    Cheap (a counter; the watchdog thread publishes it). Without a watchdog running it does nothing."""
    _progress[0] += 1


def _where(p: int) -> str:
    step = p // 2 + 1
    return f"waiting for the batch of step {step} (data loading)" if p % 2 == 0 else f"inside step {step}"


def _store():
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except Exception:
        return None


def _interval(timeout_s: float) -> float:
    return min(5.0, max(0.2, timeout_s / 20))


def start_watchdog(dims, timeout_s: float) -> None:
    """Register this rank and start its heartbeat and monitor threads (idempotent)."""
    if _state.get("thread") is not None or dims.world_size == 1:
        return
    store = _store()
    if store is None:
        return
    store.set(f"{_PREFIX}who/{dims.rank}", f"{socket.gethostname()}:{os.getpid()}")
    _progress[0] = 0
    stop = threading.Event()
    _state.update(store=store, dims=dims, timeout_s=timeout_s, stop=stop, interval=_interval(timeout_s))
    if threading.current_thread() is threading.main_thread():
        _state["old_sigterm"] = signal.signal(signal.SIGTERM, _on_sigterm)
    t = threading.Thread(target=_run, name="minwa-watchdog", daemon=True)
    _state["thread"] = t
    t.start()


def stop_watchdog(clean: bool = True) -> None:
    stop = _state.get("stop")
    if stop is None:
        return
    if clean:  # tell the others this rank is finishing, not dying
        with contextlib.suppress(Exception):
            _state["store"].set(f"{_PREFIX}done/{_state['dims'].rank}", "1")
    stop.set()
    if "old_sigterm" in _state and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _state["old_sigterm"])
    t = _state.get("thread")
    if t is not None and t is not threading.current_thread():
        t.join(timeout=2 * _state["interval"])
    _state.clear()


def _run() -> None:
    store, dims, stop = _state["store"], _state["dims"], _state["stop"]
    interval, timeout_s = _state["interval"], _state["timeout_s"]
    me, world = dims.rank, dims.world_size
    last_seen = {r: (None, time.monotonic()) for r in range(world) if r != me}
    moved = {r: (None, time.monotonic()) for r in range(world)}  # progress mark, when it last changed
    stall = STALL_FRACTION * timeout_s
    store_lost_since = None
    while not stop.wait(interval):
        try:
            store.add(f"{_PREFIX}beat/{me}", 1)
            mine = _progress[0]
            store.set(f"{_PREFIX}progress/{me}", str(mine))
            now = time.monotonic()
            if moved[me][0] != mine:
                moved[me] = (mine, now)
            for r in last_seen:
                if store.check([f"{_PREFIX}done/{r}"]):
                    last_seen[r] = (None, now)
                    continue
                if store.check([f"{_PREFIX}failed/{r}"]):
                    _die(f"rank {r} of {world} failed: {store.get(f'{_PREFIX}failed/{r}').decode()}; "
                         f"rank {me} stops too")
                count = store.add(f"{_PREFIX}beat/{r}", 0)
                prev, since = last_seen[r]
                if count != prev:
                    last_seen[r] = (count, now)
                elif now - since > timeout_s:
                    _die(f"rank {r} of {world} ({_who(store, r)}) has not responded for {now - since:.0f} s "
                         f"(parallel.timeout_s={timeout_s:g}); rank {me} stops instead of waiting")
                _check_stall(store, r, me, world, moved, now, stall)
            store_lost_since = None
        except Exception as e:  # the store itself is gone (its host died): give it timeout_s, then stop
            if stop.is_set():
                return
            store_lost_since = store_lost_since or time.monotonic()
            if time.monotonic() - store_lost_since > timeout_s:
                _die(f"rank {me} of {world} lost the rendezvous store for {timeout_s:g} s "
                     f"({type(e).__name__}); the node hosting it (rank 0's) is probably down")


def _check_stall(store, r: int, me: int, world: int, moved: dict, now: float, stall: float) -> None:
    """Name a stuck rank: ``r`` and this rank have both been still for ``stall`` s at different points."""
    key = f"{_PREFIX}progress/{r}"
    if not store.check([key]):
        return
    theirs = int(store.get(key))
    if moved[r][0] != theirs:
        moved[r] = (theirs, now)
    mine, mine_since = moved[me]
    if theirs == mine or now - moved[r][1] < stall or now - mine_since < stall:
        return
    if theirs < mine:  # tell the stuck rank (and the launcher's log) why this one goes
        with contextlib.suppress(Exception):
            store.set(f"{_PREFIX}failed/{me}", f"stopped because rank {r} is stuck, {_where(theirs)}")
        _die(f"rank {r} of {world} ({_who(store, r)}) is alive but has made no progress for {now - moved[r][1]:.0f} s, "
             f"{_where(theirs)}, while rank {me} waits {_where(mine)}; rank {me} stops instead of waiting")
    message = (f"rank {me} of {world} ({_who(store, me)}) is stuck: no progress for {now - mine_since:.0f} s, "
               f"{_where(mine)}, while rank {r} waits {_where(theirs)}")
    with contextlib.suppress(Exception):
        store.set(f"{_PREFIX}failed/{me}", message)
    _die(f"{message}; rank {me} stops")


def _on_sigterm(signum, frame) -> None:
    """torchrun stops the surviving ranks with SIGTERM when one dies; say which one before going."""
    dims = _state.get("dims")
    me = f"rank {dims.rank} of {dims.world_size}" if dims else "this rank"
    gone = find_failed_ranks(wait_s=0)
    if gone:
        print(f"error: {'; '.join(gone)}; {me} stops too", file=sys.stderr, flush=True)
    else:
        print(f"{me}: stopped by SIGTERM (the launcher stops every rank when one fails; "
              "the failing rank's node log names it)", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1 if gone else 128 + signum)


def _die(message: str) -> None:
    if _state.get("stop") is not None and _state["stop"].is_set():
        return
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def _who(store, rank: int) -> str:
    try:
        return store.get(f"{_PREFIX}who/{rank}").decode()
    except Exception:
        return "host unknown"


def _pid_dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:
        return False


def find_failed_ranks(wait_s: float | None = None) -> list[str]:
    """Describe the ranks that are gone: posted an error, a dead process on this host, or no heartbeat.

    Waits up to ``wait_s`` (default: three heartbeat intervals) for remote ranks' heartbeats to go stale.
    """
    store, dims = _state.get("store"), _state.get("dims")
    if store is None or dims is None:
        return []
    host = socket.gethostname()
    others = [r for r in range(dims.world_size) if r != dims.rank]
    wait_s = 3 * _state["interval"] if wait_s is None else wait_s
    try:
        start = {r: store.add(f"{_PREFIX}beat/{r}", 0) for r in others}
    except Exception:
        return []
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for r in others:
            try:
                if store.check([f"{_PREFIX}done/{r}"]):
                    continue
                if store.check([f"{_PREFIX}failed/{r}"]):
                    found.append(f"rank {r} failed: {store.get(f'{_PREFIX}failed/{r}').decode()}")
                    continue
                who = _who(store, r)
                h, _, pid = who.rpartition(":")
                if h == host and pid.isdigit() and _pid_dead(int(pid)):
                    found.append(f"rank {r} ({who}) died")
                elif wait_s > 0 and time.monotonic() >= deadline and store.add(f"{_PREFIX}beat/{r}", 0) == start[r]:
                    found.append(f"rank {r} ({who}) stopped responding")
            except Exception:
                return found
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(min(0.1, wait_s))


def _post_failure(rank: int, exc: BaseException) -> None:
    store = _state.get("store")
    if store is None:
        return
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    with contextlib.suppress(Exception):
        store.set(f"{_PREFIX}failed/{rank}", f"{type(exc).__name__}: {text}"[:300])


def _first_line(exc: BaseException) -> str:
    """The useful part of a backend error: first line, without gloo's '[.../pair.cc:537] ' source prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[^\]]*\]\s*", "", text)


def _is_comm_error(exc: BaseException) -> bool:
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        w in text for w in ("gloo", "nccl", "connection", "peer", "timed out", "broken pipe", "socket"))


@contextlib.contextmanager
def failure_guard(dims):
    """Wrap a multi-rank training loop: peers' failures come out as one line naming the failed rank.

    A collective that fails because a peer vanished raises :class:`MinwaError` ("rank 1 ... died; rank 0
    stops too"); an error raised on this rank is posted for the others, then re-raised unchanged.
    """
    if dims.world_size == 1:
        yield
        return
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        if not _is_comm_error(exc):
            _post_failure(dims.rank, exc)
            raise
        gone = find_failed_ranks()
        first = _first_line(exc)
        if gone:
            raise MinwaError(f"{'; '.join(gone)}; rank {dims.rank} of {dims.world_size} stops too "
                             f"(its collective failed: {first[:120]})", exit_code=1) from None
        _post_failure(dims.rank, exc)
        raise MinwaError(f"a collective failed on rank {dims.rank} of {dims.world_size}: {first[:300]}",
                         exit_code=1) from None
