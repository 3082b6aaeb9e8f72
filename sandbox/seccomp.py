"""A seccomp filter for candidate processes: an allowlist of the system calls equation code needs.

Installed in every candidate process after it is confined and before any candidate code
exists in it; a filter cannot be removed or loosened afterwards (only made stricter), and it
needs no privilege (``PR_SET_NO_NEW_PRIVS`` is set first). Whatever a candidate manages
inside its interpreter — reaching real builtins, ``ctypes``, raw memory — it can make only
the calls in ``ALLOWED``; every other call fails with ``EPERM`` before the kernel looks at
its arguments. That includes calls added to the kernel after this list was written (the
filter names what is allowed, never what is refused), and so, without naming them:

* files, sockets, pipes, shared memory, new descriptors of any kind, descriptor flags
  (``fcntl``, ``ioctl``), timestamps (``utimensat``), the file system;
* other processes: signals, ``ptrace``, ``process_vm_*``, resource limits (``prlimit64``),
  priorities (``setpriority``), pidfds — without root a candidate shares its uid with the
  factory, and these calls are what would let it act on it;
* new processes, threads, programs, namespaces, mounts, identity changes, ``prctl``.

How the list was made: every program of the shared corpus (``programs.jsonl``, all kinds,
and ``hostile.jsonl``) and the hostile tests ran through the evaluator under ``strace -f``;
a candidate process, from the moment the filter is installed until it exits or is killed,
made only ``read``/``readv``/``write`` on its pipes, ``brk``/``mmap``/``munmap``/``madvise``
for memory, ``futex`` (the interpreter's own locks) and ``exit_group``. The other entries
are the few that the same computation makes on other paths, each noted below.

The filter is a small classic-BPF program assembled here (x86-64 only; other architectures
report the layer as unavailable) and installed with ``prctl(PR_SET_SECCOMP)``. A foreign
system-call ABI (x32 numbers, a 32-bit ``int 0x80``) kills the process.
"""

from __future__ import annotations

import ctypes
import platform

_LD_W_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_ALLOW = 0x7FFF0000
_KILL = 0x80000000  # SECCOMP_RET_KILL_PROCESS
_ERRNO = 0x00050000
_EPERM = 1
_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_NR, _ARCH = 0, 4

# The allowlist (x86-64 numbers). Nothing here names or reaches another process, a file or
# the network: each call works on the caller's own memory or on descriptors it already has
# (its three pipes and a fresh /dev/null; it can open no other).
ALLOWED: dict[int, str] = {
    0: "read",  # requests on its pipe (the runtime reads frames)
    19: "readv",  # requests on its pipe (large frames are read straight into arrays)
    1: "write",  # replies on its pipe, print() to its output pipe, the hook's record pipe
    20: "writev",  # the same, gathered (buffered writes of the C library)
    12: "brk",  # the C heap
    9: "mmap",  # large arrays and the interpreter's arenas (anonymous memory)
    11: "munmap",  # freeing them
    25: "mremap",  # realloc() of a large block (growing lists, numpy resize)
    28: "madvise",  # numpy asks for huge pages on large arrays; free() trims
    202: "futex",  # the interpreter's locks (uncontended: single-threaded, BLAS on one thread)
    15: "rt_sigreturn",  # return from a signal handler (the kernel's own SIGXCPU path)
    318: "getrandom",  # np.random.default_rng() without a seed
    228: "clock_gettime",  # time.perf_counter() where the vDSO falls back to a system call
    96: "gettimeofday",  # the same, for time.time()
    60: "exit",  # the last thread ending
    231: "exit_group",  # the process ending
}


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def available() -> bool:
    return platform.machine() in ("x86_64", "AMD64") and hasattr(ctypes, "CDLL")


def program() -> list[tuple[int, int, int, int]]:
    """The filter as classic-BPF (code, jt, jf, k) instructions.

    Architecture first (anything but x86-64 is killed), then the x32 bit (killed), then one
    comparison per allowed number; whatever matches none of them gets ``EPERM``.
    """
    out: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, _ARCH_X86_64),
        (_RET, 0, 0, _KILL),
        (_LD_W_ABS, 0, 0, _NR),
        (_JGE, 0, 1, _X32_BIT),
        (_RET, 0, 0, _KILL),
    ]
    allowed = sorted(ALLOWED)
    for i, nr in enumerate(allowed):  # a match jumps over the rest to the ALLOW at the end
        out.append((_JEQ, len(allowed) - i, 0, nr))
    out.append((_RET, 0, 0, _ERRNO | _EPERM))
    out.append((_RET, 0, 0, _ALLOW))
    return out


def evaluate(insns: list[tuple[int, int, int, int]], nr: int, arch: int = _ARCH_X86_64) -> int:
    """What the filter returns for a call (the subset of classic BPF ``program`` uses).

    For tests: the kernel runs the same instructions; this reads them the same way.
    """
    acc, pc = 0, 0
    data = {_NR: nr & 0xFFFFFFFF, _ARCH: arch}
    while True:
        code, jt, jf, k = insns[pc]
        if code == _RET:
            return k
        if code == _LD_W_ABS:
            acc = data[k]
            pc += 1
        elif code == _JEQ:
            pc += 1 + (jt if acc == k else jf)
        elif code == _JGE:
            pc += 1 + (jt if acc >= k else jf)
        else:
            raise ValueError(f"unknown instruction {code:#x}")


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
ALLOW, KILL, EPERM = _ALLOW, _KILL, _ERRNO | _EPERM  # what ``evaluate`` returns


class Filter:
    """The filter assembled once (in the factory); ``install`` loads it into the caller."""

    def __init__(self, insns: list[tuple[int, int, int, int]] | None = None) -> None:
        if not available():
            raise OSError("seccomp filter: unsupported architecture")
        insns = program() if insns is None else insns  # another program: for tests only
        self._array = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
        self._prog = _Prog(len(insns), ctypes.cast(self._array, ctypes.POINTER(_Insn)))
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]

    def install(self) -> None:
        """Install in this process (irreversibly). Raises OSError when refused."""
        if self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS refused")
        if self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "seccomp filter refused")


def install() -> None:
    """Install the filter in this process (irreversibly). Raises OSError when refused."""
    Filter().install()
