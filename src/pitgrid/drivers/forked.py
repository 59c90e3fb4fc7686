"""Runs in processes that share nothing with the caller or with each other, started in milliseconds.

The point-in-time check compares runs that must share no process, no module state
and no market object: its step driver runs here, its batch run in the caller. A new
interpreter per run gives that, but costs seconds (imports, numba's cache) each
time. So each calling process starts one server: a new interpreter that imports
pitgrid and loads its compiled kernels, and runs nothing else, none of the caller's
code above all. It forks one child per run, ahead of time: two children wait forked
for the next runs, so a run does not wait for a fork, and while they wait they copy
the pages of the server's memory that the last runs wrote (a sample of the runs
reports them) and fault in as much heap as the last run used, so that a run does not
pay for its memory page by page either. Every child starts from that same clean
state; a strategy's module is imported afresh in the child when its pickle is loaded,
so no cache, global or market object carries over from the caller or from another run.

A market goes to the children as files of raw arrays that they map read-only
(:func:`export_market`): the operating system, not a flag a strategy could flip,
keeps them from being written, and nothing is copied or decoded.

The server lives as long as its caller: when the caller is gone, killed included, it
ends the runs still under way and removes what the caller would have, the runs'
results and the caller's exported markets, which are files in memory. A run's process
lives no longer than its server.

Where ``fork`` is missing (Windows), each run gets a new interpreter instead.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

_HEADER = struct.Struct("<Q")
_GREW = struct.Struct("<q")
_SERVE = "from pitgrid.drivers.forked import _serve; _serve()"
_STOP = "stop"  # the caller's last word to its server when it stops it, alive
_ONE = "from pitgrid.drivers.forked import _run_one; _run_one()"


class Run:
    """One submitted run; :meth:`result` waits for it and returns what its function returned."""

    def __init__(self, server: _Server | None, rid: int, path: Path,
                 proc: subprocess.Popen | None = None) -> None:
        self._server, self._rid, self._path, self._proc = server, rid, path, proc

    def result(self) -> Any:
        loaded = False
        try:
            # when the server dies, so does the run's process (_die_with): nothing comes later
            code = self._proc.wait() if self._proc is not None else self._server.wait(self._rid)
            with open(self._path, "rb") as f:
                status, value = pickle.load(f)  # each array file is removed as it is mapped
            loaded = True
        except FileNotFoundError:
            how = f"signal {-code}" if code < 0 else f"exit {code}"
            raise RuntimeError(f"a check run's process died ({how}) before it could report") from None
        finally:
            self._path.unlink(missing_ok=True)
            Path(str(self._path) + ".part").unlink(missing_ok=True)
            if not loaded:  # a run cut short may leave arrays it wrote
                for left in self._path.parent.glob(self._path.name + ".*.npy"):
                    left.unlink(missing_ok=True)
        if status == "error":
            raise RuntimeError(f"a check run's process failed: {value}")
        return value


def submit(fn: Callable[..., Any], *args: Any, market: str | None = None) -> Run:
    """Run ``fn(*args)`` in a new process forked from the clean server; ``fn`` must be a
    module-level function (it is sent by name), ``args`` picklable. ``market``: the
    folder of an exported market the run imports (:func:`import_market`), which the
    server then imports once itself, between runs, so that the next runs' processes
    start with it.

    Example:
        >>> submit(max, 2, 3).result()  # doctest: +SKIP
        3
    """
    request = pickle.dumps((fn.__module__, fn.__qualname__, args, list(sys.path)),
                           protocol=pickle.HIGHEST_PROTOCOL)
    fd, name = tempfile.mkstemp(prefix="pitgrid-run-", suffix=".pickle", dir=_scratch())
    os.close(fd)
    os.unlink(name)  # the child writes it when done: its absence means the child died
    path = Path(name)
    if not hasattr(os, "fork"):
        proc = subprocess.Popen([sys.executable, "-c", _ONE], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps((str(path), request)))
        proc.stdin.close()
        return Run(None, 0, path, proc)
    server = _Server.get()
    return Run(server, server.send(str(path), request, market), path)


def start_server() -> None:
    """Start the server now (it starts on first use otherwise): its start-up then overlaps
    the caller's own work."""
    if hasattr(os, "fork"):
        _Server.get()


class _Server:
    _instance: _Server | None = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> _Server:
        with cls._lock:
            s = cls._instance
            # a forked caller must not share its parent's pipes
            if s is None or s.pid != os.getpid() or s.proc.poll() is not None:
                cls._instance = s = cls()
            return s

    def __init__(self) -> None:
        self.pid = os.getpid()
        # the server's files (the pages its runs record), removed by this process: also
        # when the server is killed
        self.folder = tempfile.TemporaryDirectory(prefix="pitgrid-server-", dir=_scratch(),
                                                  ignore_cleanup_errors=True)
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE, self.folder.name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=_huge_heap(os.environ))
        self.next_id = 0
        self.done: dict[int, int] = {}
        self.sending, self.reading = threading.Lock(), threading.Lock()
        atexit.register(self.stop)

    def send(self, path: str, request: bytes, market: str | None = None) -> int:
        with self.sending:
            rid = self.next_id
            self.next_id += 1
            _write(self.proc.stdin, (rid, path, request, market))
            return rid

    def wait(self, rid: int) -> int:
        with self.reading:
            while rid not in self.done:
                msg = _read(self.proc.stdout.read)
                if msg is None:
                    raise RuntimeError("the check's process server died")
                self.done[msg[0]] = msg[1]
            return self.done.pop(rid)

    def stop(self) -> None:
        if self.pid == os.getpid() and self.proc.poll() is None:
            with contextlib.suppress(OSError):  # a caller that stops it keeps its markets
                _write(self.proc.stdin, _STOP)
            self.proc.stdin.close()  # the server returns on end of input
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.pid == os.getpid():
            self.folder.cleanup()


def _huge_heap(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with glibc's malloc asked to put its heap on huge pages
    (``glibc.malloc.hugetlb=1``, read once, when a process starts): a run's arrays then
    fault in 2 MB at a time, not 4 KB: a tenth to a fifth less processor time per check. A
    setting the caller made stands; other C libraries ignore it."""
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" in tunables:
        return dict(env)
    return {**env, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, "glibc.malloc.hugetlb=1"]))}


def _write(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(read: Callable[[int], bytes]) -> Any:
    """One message, or None at end of input; ``read(n)`` returns at most n bytes."""
    head = _exactly(read, _HEADER.size)
    if head is None:
        return None
    body = _exactly(read, _HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def _exactly(read: Callable[[int], bytes], n: int) -> bytes | None:
    parts, got = [], 0
    while got < n:
        part = read(n - got)
        if not part:
            return None
        parts.append(part)
        got += len(part)
    return b"".join(parts)


# ---------------------------------------------------------------------- the server's side
def _serve() -> None:
    """The server: warmed up once, then its loop (:func:`_loop`) until the caller is gone."""
    global _PAGES
    _PAGES = sys.argv[1]
    caller = os.getppid()  # before the caller is gone and this process is handed on
    _warm()
    _freeze()
    _loop(caller)
    # the caller is gone: also when it left without removing the folder (os._exit)
    shutil.rmtree(_PAGES, ignore_errors=True)


_PAGES = ""  # the server's folder where runs record the pages they wrote, a file per run


def _loop(caller: int) -> None:
    """The server's loop: a request goes to a child forked beforehand and waiting idle (a
    fork of this process takes milliseconds, so it is not on a run's path); a run is
    reported by id when its child says it is done, or when the child exits without.
    Returns when the caller is gone, having cleared what it leaves (:func:`_clear`), or
    when the caller stops it."""
    import collections
    import select

    # unbuffered: select sees the descriptor, so nothing may wait in a Python buffer
    inp, out = sys.stdin.fileno(), sys.stdout.buffer
    # (pid, request pipe, done pipe, bytes prefaulted) of each waiting child
    idle: list[tuple[int, int, int, int]] = []
    children: dict[int, list[Any]] = {}  # pid -> [request id, pidfd, done pipe or None, result file]
    reported: collections.deque[str] = collections.deque(maxlen=64)  # result files, maybe unread
    markets: set[str] = set()  # the folders of the markets the caller exported for its runs
    grew = [0] * _IDLE  # how far the last runs' memory grew: the most is what a child prefaults
    wrote: list[np.ndarray] = []  # the pages of the server's memory the last runs wrote
    forks = 0  # children forked to wait: every _RECORD_EVERY-th records the pages its run wrote
    hot = np.zeros(0, dtype=np.uint64)
    wanted = None  # the market folder of the last request that named one
    stopped = False  # by the caller, who goes on: its markets are its own to remove

    try:
        while True:
            # a run is under way until its child says it is done (it may still be exiting)
            running = any(c[0] is not None for c in children.values())
            if wanted is not None and not running:
                _preload(wanted)
                wanted = None
                for pid, w, done, _ in idle:  # forked without it: replaced by children with it
                    os.close(w)
                    os.close(done)
                    os.waitpid(pid, 0)
                idle = []
                continue
            if len(idle) < _IDLE and not running and not _requested(inp):
                # forked between runs, not while one runs: a fork holds up this loop (and so
                # the news that a run is done) and takes a core from the runs; nor while a
                # request waits, which takes a child now (one forked for it if none waits)
                record = len(wrote) < 2 * _IDLE or forks % _RECORD_EVERY == 0
                forks += 1
                idle.append((*_fork_idle([e[1] for e in idle], max(grew), hot, record), max(grew)))
                continue
            short = [k for k, e in enumerate(idle) if e[3] < max(grew) // 2]
            # a caller's runs come close together: a replacement waits for a lull
            if not running and short and not _requested(inp, 0.02):
                # no run under way: a child that prefaulted too little (forked before a run said
                # how much, or before the last run grew) is replaced by one that prefaults enough
                pid, w, done, _ = idle.pop(short[0])
                os.close(w)  # it reads the end of its request pipe and leaves
                os.close(done)
                os.waitpid(pid, 0)
                continue
            done_fds = {c[2]: pid for pid, c in children.items() if c[2] is not None}
            fds = [inp, *done_fds] + [c[1] for c in children.values() if c[1] is not None]
            # a child without a pidfd (an old kernel) is polled for every few milliseconds
            polled = any(c[1] is None for c in children.values())
            ready, _, _ = select.select(fds, [], [], 0.005 if polled else None)
            for fd in ready:
                if fd in done_fds:  # the result is in place: report it while the child exits
                    child = children[done_fds[fd]]
                    said = os.read(fd, _GREW.size)
                    if len(said) == _GREW.size:
                        grew = [*grew[1:], _GREW.unpack(said)[0]]
                    os.close(fd)
                    child[2] = None
                    _write(out, (child[0], 0))
                    child[0] = None
            if inp in ready:  # before the children that ended: a run waits on it
                msg = _read(lambda n: os.read(inp, n))
                if msg is None or msg == _STOP:  # idle children see their pipes close and leave
                    stopped = msg == _STOP
                    break
                rid, path, request, market = msg
                if market is not None:
                    markets.add(str(Path(market).parent))
                    if _preloaded(market) is None:
                        wanted = market
                data = pickle.dumps((path, request), protocol=pickle.HIGHEST_PROTOCOL)
                while True:
                    pid, w, done = idle.pop(0)[:3] if idle else _fork_idle([])
                    try:
                        os.write(w, data)
                        break
                    except BrokenPipeError:  # a waiting child that died (killed from outside)
                        os.close(done)
                        os.waitpid(pid, 0)
                    finally:
                        os.close(w)
                children[pid] = [rid, _pidfd(pid), done, path]
            for pid, child in list(children.items()):
                if child[1] is not None and child[1] not in ready:
                    continue
                done, status = os.waitpid(pid, 0 if child[1] is not None else os.WNOHANG)
                if done:
                    for fd in child[1:3]:
                        if fd is not None:
                            os.close(fd)
                    del children[pid]
                    pages = _take_pages(os.path.join(_PAGES, str(pid)))
                    if pages is not None:
                        wrote = [*wrote[-(2 * _IDLE - 1):], pages]
                        hot = np.unique(np.concatenate(wrote))
                        hot = hot[_within(hot, _rw_spans())]  # what a child forked now has
                    if child[0] is not None:
                        _write(out, (child[0], os.waitstatus_to_exitcode(status)))
                    reported.append(child[3])
    except BrokenPipeError:  # the caller is gone as a run was reported to it
        pass
    _clear(caller, children, reported, () if stopped else markets)


def _clear(caller: int, children: dict[int, list[Any]], reported: Iterable[str],
           markets: Iterable[str]) -> None:
    """The caller is gone (it may have been killed), and what it would have removed is
    removed: its runs still under way are ended, their result files and those not yet
    read are deleted, and so are the folders of its exported markets (in memory, under
    ``/dev/shm``). Only the caller's own: a process forked from it shares its exports'
    folder but names none of them, so it never takes its parent's markets away."""
    import glob

    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    for path in [*(c[3] for c in children.values()), *reported]:
        for name in (path, path + ".part", *glob.glob(glob.escape(path) + ".*.npy")):
            with contextlib.suppress(OSError):
                os.unlink(name)
    for folder in markets:
        if Path(folder).name.startswith(f"pitgrid-markets-{caller}-"):
            shutil.rmtree(folder, ignore_errors=True)


def _freeze() -> None:
    """Move every object the server holds out of the collector's sight: a child's
    collections then never touch (and so never copy) the pages they live on. Then onto
    huge pages (:func:`_collapse`)."""
    import gc

    gc.collect()
    gc.freeze()
    _collapse()


_MADV_COLLAPSE = 25  # Linux 6.1
_HUGE = 1 << 21


def _collapse() -> None:
    """Back the server's heap and other private memory with huge pages where the kernel
    can (``MADV_COLLAPSE``): a fork then copies one page table entry per 2 MB of it
    instead of 512, and a child's exit tears as few down; together about a tenth of a
    check's processor time. A child's first write to such a page still copies 4 KB."""
    madvise = _madvise()
    if madvise is None:
        return
    # a mapping the kernel refuses (EINVAL: one it cannot back so, or a kernel without the
    # call) leaves the others to try: a call costs microseconds
    for first, end in _rw_spans(anonymous=True).tolist():
        # whole huge pages inside the mapping
        a = -(-(first << 12) // _HUGE) * _HUGE
        b = (end << 12) // _HUGE * _HUGE
        if b > a:
            madvise(a, b - a, _MADV_COLLAPSE)


_PRELOADED: tuple[tuple[str, int, int], Any] | None = None


def _export_key(folder: str | Path) -> tuple[str, int, int] | None:
    """Which export is in ``folder`` now (a folder's name is reused for a later export)."""
    try:
        st = os.stat(Path(folder) / "meta.pickle")
    except OSError:
        return None
    return str(Path(folder).resolve()), st.st_ino, st.st_mtime_ns


def _preload(folder: str) -> None:
    """Import the market exported in ``folder`` in the server, for the children forked from
    now on (:func:`import_market` hands it to them): each has its own copy of it, copied
    on write, and none pays for importing it. The one imported before is let go."""
    global _PRELOADED

    key = _export_key(folder)
    _PRELOADED = None
    if key is None:
        return
    threads = _threads()
    try:
        _PRELOADED = key, import_market(folder)
    except Exception:  # noqa: BLE001 - removed meanwhile (its checks are over): runs import it
        return
    if _threads() > threads:  # a child would wait on it forever: better no server at all
        os._exit(70)
    _freeze()


def _preloaded(folder: str | Path) -> Any:
    """The market the server imported from ``folder``, when it is the export there now."""
    if _PRELOADED is not None and _PRELOADED[0] == _export_key(folder):
        return _PRELOADED[1]
    return None


# children kept forked and waiting: the sampled check submits two runs at once, and a
# check right after another gets one that had the last check's time to prepare
_IDLE = 2


def _fork_idle(others: list[int], prefault: int = 0, hot: np.ndarray | None = None,
               record: bool = False) -> tuple[int, int, int]:
    """A child forked now that waits for one request on a pipe of its own, runs it, says
    so on its done pipe, and exits; returns (pid, request pipe, done pipe). While it
    waits it copies the pages ``hot`` of the server's memory (:func:`_populate`) and,
    once no request has come for a moment, prefaults up to ``prefault`` bytes of heap
    (:func:`_prefault`): runs that come close together are not slowed by that.
    ``record``: once done, it records the pages its run wrote (:func:`_written_pages`)."""
    r, w = os.pipe()
    done_r, done_w = os.pipe()
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            _die_with(server)
            for fd in (w, done_r, *others):  # the other children's pipes: theirs alone
                os.close(fd)
            os.dup2(os.open(os.devnull, os.O_RDWR), 0)
            os.dup2(2, 1)  # whatever the run prints must not reach the status pipe
            heap = _keep_heap()  # the run reuses what it frees, prefaulted or not
            _populate(hot, r)  # a few MB: worth it also to a run that comes at once
            if heap and not _requested(r, _LULL):
                _prefault(prefault, r)
            with os.fdopen(r, "rb") as f:
                data = f.read()
            if data:  # an empty read: the server is gone before sending anything
                path, request = pickle.loads(data)
                _child(path, request, done_w, record)
        finally:  # never back into the server's loop
            os._exit(1)
    os.close(r)
    os.close(done_w)
    return pid, w, done_r


def _die_with(server: int) -> None:
    """End this process when the server ``server`` ends (Linux's ``PR_SET_PDEATHSIG``): a
    server killed from outside takes its runs with it, and no run writes a result
    after its caller has given up on it."""
    prctl = _libc("prctl")
    if prctl is not None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != server:  # it ended before that was set
        os._exit(1)


_CHUNK = 1 << 22
_MMAP_MAX = 1 << 25  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems


def _rw_spans(anonymous: bool = False) -> np.ndarray:
    """This process's private writable mappings (``anonymous``: those of no file, the
    heap's included), as (first page, end page) rows; none where ``/proc`` does not say."""
    try:
        with open("/proc/self/maps") as f:
            spans = [[int(x, 16) >> 12 for x in p[0].split("-")]
                     for p in map(str.split, f) if p[1] == "rw-p"
                     and not (anonymous and len(p) > 5 and p[5] != "[heap]")]
    except OSError:
        spans = []
    return np.array(spans, dtype=np.uint64).reshape(-1, 2)


def _within(pages: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Which of the (sorted) ``pages`` lie in one of ``spans``."""
    k = np.searchsorted(spans[:, 0], pages, side="right") - 1
    return (k >= 0) & (pages < spans[np.maximum(k, 0), 1])


def _written_pages(path: str) -> None:
    """Record at ``path`` the pages of this process's private writable mappings that it
    maps alone (``/proc/self/pagemap``): in a run's process, those of the server's
    memory it wrote (a page is shared until first written) and those it allocated. Run
    only when a processor has nothing else to do: the run is done, and the next ones may
    be under way."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.nice(19)
    spans = _rw_spans()
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return
    try:
        raw = b"".join(os.pread(fd, int(b - a) * 8, int(a) * 8) for a, b in spans)
        entries = np.frombuffer(raw, dtype=np.uint64)
    except OSError:
        return
    finally:
        os.close(fd)
    # bit 63: present; bit 56: mapped by this process only
    alone = np.flatnonzero((entries >> np.uint64(63)) & (entries >> np.uint64(56)) & np.uint64(1))
    lengths = (spans[:, 1] - spans[:, 0]).astype(np.int64)
    ends = np.cumsum(lengths)  # of each span among the entries
    k = np.searchsorted(ends, alone, side="right")
    pages = spans[k, 0] + (alone - (ends - lengths)[k]).astype(np.uint64)
    with contextlib.suppress(OSError):  # the server is gone, and its folder with it
        pages.tofile(path + ".tmp")
        os.replace(path + ".tmp", path)


def _take_pages(path: str) -> np.ndarray | None:
    """The pages a finished run recorded at ``path`` (:func:`_written_pages`)."""
    try:
        pages = np.fromfile(path, dtype=np.uint64)
    except OSError:
        return None
    Path(path).unlink(missing_ok=True)
    return pages


# the pages runs write hardly change from one run to the next, and reading which they
# wrote costs about as much CPU as a run's own page faults: a sample of the runs records them
_RECORD_EVERY = 8

_LULL = 0.03  # seconds without a request before a waiting child prepares for one


def _requested(request: int, wait: float = 0.0) -> bool:
    """Whether a request is waiting on ``request`` (within ``wait`` seconds)."""
    import select

    return bool(select.select([request], [], [], wait)[0])


_MADV_POPULATE_WRITE = 23  # Linux 5.14


def _populate(hot: np.ndarray | None, request: int) -> None:
    """Write-fault now the pages ``hot`` (sorted, inside this process's private writable
    mappings): a page of the server's memory is copied, as a first write to it would, and
    a page the server never touched is allocated. The next run writes them (reference
    counts, caches), and each first write to a shared page would stop it for a copy.
    Stops as soon as a request is waiting on ``request``."""
    madvise = _madvise()
    if hot is None or not hot.size or madvise is None:
        return
    size = os.sysconf("SC_PAGE_SIZE")
    cut = np.r_[0, np.flatnonzero(np.diff(hot) != 1) + 1]  # runs of consecutive pages
    runs = zip(hot[cut].tolist(), np.diff(np.r_[cut, hot.size]).tolist())
    for k, (first, n) in enumerate(runs):  # a call each
        if k % 16 == 0 and _requested(request):
            return
        if madvise(first * size, n * size, _MADV_POPULATE_WRITE) != 0 and k == 0:
            return  # an older kernel: the run copies them itself


def _libc(name: str) -> Any:
    """The C library's function ``name`` on Linux (``errno`` kept), or None."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


def _madvise() -> Callable[[int, int, int], int] | None:
    """The C library's ``madvise`` (Linux), or None."""
    import ctypes

    madvise = _libc("madvise")
    if madvise is not None:
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise


def _keep_heap() -> bool:
    """Have glibc keep freed memory (``M_TRIM_THRESHOLD``) and serve arrays up to
    ``_MMAP_MAX`` from the heap (``M_MMAP_THRESHOLD``) rather than from new mappings: a
    run's process then reuses what it frees, and what :func:`_prefault` touched. False
    where the C library is not glibc on Linux."""
    mallopt = _libc("mallopt")
    return mallopt is not None and bool(mallopt(-1, 1 << 30) and mallopt(-3, _MMAP_MAX))


def _prefault(nbytes: int, request: int) -> None:
    """Touch up to ``nbytes`` of fresh heap and keep it: the run's arrays then land on
    pages that are already mapped instead of faulting them in one at a time (a forked
    child starts with none of its own; a run's page faults cost about a third of its
    time). Stops as soon as a request is waiting on ``request``. Only after
    :func:`_keep_heap`."""
    if nbytes <= 0:
        return
    held = []
    for _ in range(min(nbytes, _prefault_cap()) // _CHUNK):
        if _requested(request):
            break
        chunk = np.empty(_CHUNK, dtype=np.uint8)
        chunk.fill(1)
        held.append(chunk)
    del held  # back to the heap, which keeps the pages


def _prefault_cap() -> int:
    """At most an eighth of the memory available now, and 2 GiB."""
    try:
        return min(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 8, 1 << 31)
    except (ValueError, OSError):
        return 0


def _resident() -> int:
    """This process's resident memory now, in bytes (0 where ``/proc`` does not say)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _peak() -> int:
    """This process's peak resident memory, in bytes (Linux counts ``ru_maxrss`` in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if _resident() else 0


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not in this Python or this kernel
        return None


def _child(path: str, request: bytes, done: int | None = None, record: bool = False) -> None:
    start = _resident()
    try:
        module, name, args, caller_path = pickle.loads(request)
        # the caller's sys.path, so the strategy's module imports as it did there
        sys.path[:0] = [p for p in caller_path if p not in sys.path]
        import importlib

        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
        outcome = ("ok", fn(*args))
    except BaseException as exc:  # reported to the caller, who raises it
        outcome = ("error", f"{type(exc).__name__}: {exc}")
    try:
        with open(path + ".part", "wb") as f:
            _Pickler(f, path).dump(outcome)
    except Exception as exc:
        with open(path + ".part", "wb") as f:
            pickle.dump(("error", f"its result could not be sent back: {exc}"), f)
    os.replace(path + ".part", path)
    sys.stdout.flush()
    if done is not None:  # with how far the run's memory grew: what the next ones prefault
        os.write(done, _GREW.pack(max(_peak() - start, 0)))
        if record:
            _written_pages(os.path.join(_PAGES, str(os.getpid())))
    os._exit(0)


class _Pickler(pickle.Pickler):
    """Large arrays of a run's result go to files of their own beside it: written once,
    mapped by the caller (:func:`_mapped`), instead of copied through the pickle four times."""

    BIG = 1 << 20

    def __init__(self, f: Any, path: str) -> None:
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self.path, self.n = path, 0

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.nbytes >= self.BIG and obj.dtype.kind in "biuf":
            name = f"{self.path}.{self.n}.npy"
            self.n += 1
            np.save(name, obj, allow_pickle=False)
            return _mapped, (name,)
        return NotImplemented


def _mapped(name: str) -> np.ndarray:
    """An array a run wrote (:class:`_Pickler`), mapped read-only; its file is removed at
    once (the mapping keeps the data until the array is gone)."""
    a = np.load(name, mmap_mode="r")
    os.unlink(name)
    return a


def _run_one() -> None:
    """A single run in a new interpreter, where there is no fork."""
    path, request = pickle.loads(sys.stdin.buffer.read())
    _child(path, request)


def _warm() -> None:
    """Import what the runs use and load every kernel's compiled code from numba's cache,
    batch and streaming, so that no child pays for it.

    Then both of the check's runs once on a small market (:func:`pit._rehearse`): what
    they import and the code paths they first take are then every child's from the start,
    where each child used to pay for them (a third of a run on a large market).

    Nothing that starts a thread pool may run here (no polars query): a pool that exists
    before a fork is one the child would wait on forever, so the server refuses to start
    when the warm-up has started a thread."""
    import cloudpickle  # noqa: F401
    import tqdm.auto  # noqa: F401 - the step driver's progress bar

    import pitgrid  # noqa: F401
    import pitgrid.strategies  # noqa: F401 - what most checked strategies build on
    from pitgrid import kernels
    from pitgrid.drivers import batch, pit, step  # noqa: F401
    from pitgrid.kernels.stream import _REQUIRED, _SPECS

    from pitgrid.drivers.digests import row_digests

    threads = _threads()  # those the imports start (polars' own) wait on nothing of a child's
    writable = np.linspace(1.0, 2.0, 8).reshape(4, 2)
    # a market's arrays are read-only, which numba compiles (and caches) apart
    frozen = writable.copy()
    frozen.setflags(write=False)
    for x in (writable, frozen, writable > 1.5, (writable > 1.5).astype(np.int64)):
        row_digests(x)
    for name, spec in _SPECS.items():
        params = {p: 3 for p, default in spec.params if default is _REQUIRED}
        try:
            for x in (writable, frozen):
                getattr(kernels, name)(*[x[:, 0] if i == "y" else x for i in spec.inputs], **params)
                # the step driver advances over blocks of the market's (read-only) rows
                kernels.Stream(name, 2, **params).advance(*[x[:, 0] if i == "y" else x
                                                            for i in spec.inputs])
            kernels.Stream(name, 2, **params).update(*[1.5 if i == "y" else writable[0]
                                                      for i in spec.inputs])
        except Exception:  # noqa: BLE001 - a cache not warmed only costs a child its loading
            continue
    pit._rehearse()
    if _threads() > threads:
        raise RuntimeError("the check's server started a thread while warming up: its children "
                           "would wait on it forever")


def _threads() -> int:
    """How many threads this process runs (0 where ``/proc`` does not say)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


# ---------------------------------------------------------------------- markets as files
def export_market(market: Any, folder: Path) -> Path:
    """Write ``market`` (in memory) as raw array files and one pickle of the rest; return
    the folder. :func:`import_market` maps it back, read-only."""
    folder.mkdir(parents=True, exist_ok=False)
    ds = market.ds
    for name in ds.data_vars:
        # C order, as the step driver's view hands rows: one layout, one rounding
        np.save(folder / f"{name}.npy", np.ascontiguousarray(ds[name].values), allow_pickle=False)
    meta = {"fields": list(ds.data_vars), "time": market.time, "symbols": market.symbols,
            "tables": {n: getattr(market, n) for n in ("universes", "actions", "events", "regimes")},
            # what the market already knows of itself, so that no child recomputes it
            "delist": market._delist, "fingerprint": market._fingerprint, "facts": market.facts,
            "attrs": dict(ds.attrs)}
    with open(folder / "meta.pickle", "wb") as f:
        pickle.dump(meta, f, protocol=pickle.HIGHEST_PROTOCOL)
    return folder


class Exports:
    """Markets exported for runs, kept for the life of the process (the last few, by
    :meth:`MarketData.cache_key`), so that checking several strategies on one market
    writes it once. A market is held while a check uses it (:meth:`lease`): checks in
    several threads never remove one another's."""

    _folder: tempfile.TemporaryDirectory | None = None
    _kept: dict[str, Path] = {}
    _users: dict[str, int] = {}
    _lock = threading.Lock()
    KEEP = 2

    @classmethod
    @contextlib.contextmanager
    def lease(cls, market: Any) -> Iterator[Path]:
        """The folder of ``market``'s export, written if it is not there, kept until the
        block ends.

        Example:
            >>> with Exports.lease(market) as folder:  # doctest: +SKIP
            ...     submit(fn, str(folder)).result()
        """
        # a hash of the whole key: cuts of one market share its first characters
        key = hashlib.sha256(market.cache_key().encode()).hexdigest()[:40]
        with cls._lock:
            if cls._folder is None:
                # named for this process: its server removes it if this process is killed
                cls._folder = tempfile.TemporaryDirectory(prefix=f"pitgrid-markets-{os.getpid()}-",
                                                          dir=_scratch())
            cls._users[key] = cls._users.get(key, 0) + 1
            try:
                if key in cls._kept:
                    cls._kept[key] = cls._kept.pop(key)  # most recently used last
                else:
                    cls._evict(cls.KEEP - 1)
                    cls._kept[key] = export_market(market, Path(cls._folder.name) / key)
            except BaseException:
                cls._release(key)
                raise
        try:
            yield cls._kept[key]
        finally:
            with cls._lock:
                cls._release(key)
                cls._evict(cls.KEEP)

    @classmethod
    def _release(cls, key: str) -> None:
        cls._users[key] -= 1
        if not cls._users[key]:
            del cls._users[key]

    @classmethod
    def _evict(cls, keep: int) -> None:
        """Remove the least recently used exports no check holds, down to ``keep``."""
        for key in [k for k in cls._kept if k not in cls._users][: max(len(cls._kept) - keep, 0)]:
            shutil.rmtree(cls._kept.pop(key), ignore_errors=True)


def import_market(folder: str | Path) -> Any:
    """The market of :func:`export_market`, its arrays mapped read-only from the files
    (in a run's process, the server's import of it when there is one: :func:`_preload`)."""
    import xarray as xr

    from pitgrid.data.market import MarketData

    preloaded = _preloaded(folder)
    if preloaded is not None:
        return preloaded
    folder = Path(folder)
    with open(folder / "meta.pickle", "rb") as f:
        meta = pickle.load(f)
    fields = {n: (("time", "symbol"), np.load(folder / f"{n}.npy", mmap_mode="r"))
              for n in meta["fields"]}
    ds = xr.Dataset(fields, coords={"time": meta["time"], "symbol": meta["symbols"]},
                    attrs=meta["attrs"])
    return MarketData._from_parts(ds, meta["tables"], meta["fingerprint"], None, meta["delist"],
                                  meta["facts"])


def scratch_folder(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary folder in memory where the system has one (``/dev/shm``)."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=_scratch())


def _scratch() -> str | None:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30:
        return shm
    return None
