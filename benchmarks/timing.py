"""Timing on a shared machine, for every benchmark: the machine's name, a load guard, and
interleaved runs whose ratios are medians over repeats."""
from __future__ import annotations

import math
import os
import platform
import statistics
import time

MIN_RUN_S = 0.25  # a timed run of a short call repeats it at least this long


def add_timing_arguments(parser, repeats: int, unit: str) -> None:
    """The flags every benchmark shares: repeats, warm-up, threads and the load guard's limits."""
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed {unit}; medians are kept")
    parser.add_argument("--warmup", type=int, default=1, help=f"untimed {unit} first (at least 1)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch.set_num_threads (default: the CPUs this process may use)")
    parser.add_argument("--max-other-load", type=float, default=0.25,
                        help=f"re-run one of the {unit} when other processes used more CPUs than this meanwhile")
    parser.add_argument("--retry-budget", type=float, default=300.0,
                        help=f"seconds spent at most on such re-runs; later {unit} are kept whatever the load")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time this process's CPU time, not wall time: steadier on a busy shared machine "
                             "(with --threads 1: with more threads, waits for a descheduled thread are not counted)")


def machine(threads: int) -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
        name = f"{info.get('model name', name)} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} logical CPUs, torch threads {threads}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_result(guard: "LoadGuard", unit: str, results: dict[str, float]) -> None:
    """The closing lines of a benchmark: the load, and ``RESULT name=value ...``."""
    print(f"\nload average at the end {load_average()}; {unit} kept although other processes were busy: "
          f"{guard.loaded}")
    print("RESULT " + " ".join(f"{name}={value:.3f}" for name, value in results.items()))


class LoadGuard:
    """Notices other processes' CPU use (from /proc/stat) while a pair of runs is timed.

    On a shared machine another process's burst slows a 2-thread run many times over. A pair
    during which the rest of the machine used more than ``limit`` CPUs on average is run again, as
    long as ``budget`` seconds of re-runs remain; pairs kept anyway are counted as ``loaded``.
    """

    def __init__(self, limit: float, budget: float):
        self.limit, self.budget, self.loaded = limit, budget, 0
        self.cpus = os.cpu_count() or 1

    @staticmethod
    def _jiffies() -> tuple[int, int, int]:
        """(busy jiffies of all CPUs, all jiffies, this process's jiffies)."""
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        with open("/proc/self/stat") as f:
            utime, stime = map(int, f.read().rsplit(")", 1)[1].split()[11:13])
        busy = user + nice + system + irq + softirq + steal
        return busy, busy + idle + iowait, utime + stime

    def start(self):
        self._mark, self._time = (self._jiffies() if os.path.exists("/proc/stat") else None), time.perf_counter()

    def clean(self) -> bool:
        """Whether the run since start() had the machine to itself (always True without /proc)."""
        if self._mark is None:
            return True
        busy, total, own = (b - a for a, b in zip(self._mark, self._jiffies()))
        others = max(0, busy - own) / max(total, 1) * self.cpus  # CPUs used by everyone else
        if others <= self.limit:
            return True
        if self.budget > 0:
            time.sleep(1.0)  # let the other process's burst pass
            self.budget -= time.perf_counter() - self._time
            return False
        self.loaded += 1
        return True


def interleaved(fns, repeats: int, warmup: int, guard: LoadGuard, clock=time.perf_counter) -> list[tuple[float, ...]]:
    """``repeats`` rounds of seconds per call (by ``clock``: wall time, or ``time.process_time``), one per
    function, in the order of ``fns``.

    Each round runs every function once back to back, the order rotated from round to round; a run
    repeats a short call until it lasts MIN_RUN_S (timed per call), so that the load guard has
    something to measure. A round the guard finds loaded is run again.
    """
    for _ in range(max(warmup, 1)):
        for fn in fns:
            fn()
    start = clock()
    fns[0]()
    calls = max(1, math.ceil(MIN_RUN_S / (clock() - start)))
    rounds = []
    while len(rounds) < repeats:
        times = [0.0] * len(fns)
        guard.start()
        shift = len(rounds) % len(fns)
        for index in list(range(len(fns)))[shift:] + list(range(len(fns)))[:shift]:
            start = clock()
            for _ in range(calls):
                fns[index]()
            times[index] = (clock() - start) / calls
        if guard.clean():
            rounds.append(tuple(times))
    return rounds


def order_balanced_ratios(pairs: list[tuple[float, float]]) -> list[float]:
    """Ratios second / first of ``interleaved`` rounds of two functions, two rounds at a time.

    ``interleaved`` alternates which of the two runs first; on a CPU the call that runs second can
    pay for the first one's memory (pages freed and faulted in again: a 2-6 GB training step moves
    a round's ratio by +-0.15). Summing a round of each order cancels that: one ratio per two rounds.
    """
    return [(pairs[i][1] + pairs[i + 1][1]) / (pairs[i][0] + pairs[i + 1][0]) for i in range(0, len(pairs) - 1, 2)]


def paired(vanilla, patched, repeats: int, warmup: int, guard: LoadGuard) -> tuple[float, float, float]:
    """(median vanilla s, median patched s, median of the per-pair ratios patched / vanilla)."""
    pairs = interleaved([vanilla, patched], repeats, warmup, guard)
    return (statistics.median(v for v, _ in pairs), statistics.median(p for _, p in pairs),
            statistics.median(p / v for v, p in pairs))


def peak_memory_reset() -> bool:
    """Reset this process's peak resident memory (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_bytes() -> int:
    """Peak resident memory of this process since the last reset (VmHWM), 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0
