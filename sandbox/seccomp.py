"""A seccomp filter for candidate processes: the kernel refuses what equation code never needs.

Installed in every candidate process after it is confined and before any candidate code
exists in it; a filter cannot be removed or loosened afterwards (only made stricter), and it
needs no privilege (``PR_SET_NO_NEW_PRIVS`` is set first). Whatever a candidate manages
inside its interpreter — reaching real builtins, ``ctypes``, raw memory — these system calls
fail with ``EPERM``:

* sockets of any kind (``socket``, ``socketpair``, ``connect``, ``bind``, ``accept`` …);
* System V IPC and POSIX message queues (shared memory segments between processes);
* opening a file for writing or creating one (``open``/``openat`` with a write, create,
  truncate, append or tmpfile flag; ``creat``, ``openat2``), and changing the file system
  (``mkdir``, ``unlink``, ``rename``, ``link``, ``chmod``, ``chown``, ``truncate`` …);
* ``ptrace``, ``process_vm_readv``/``writev``, pidfds, ``kcmp``;
* signals to any process but itself (``kill``/``tgkill``/``tkill`` are allowed only with
  its own pid, ``rt_sigqueueinfo`` not at all);
* new processes, threads, programs and namespaces (``clone``, ``clone3``, ``fork``,
  ``execve``, ``unshare``, ``setns``), mounts, ``chroot``, identity changes, ``prctl``,
  ``bpf``, ``io_uring``, ``userfaultfd``, ``perf_event_open``, keyrings and module loading.

The filter is a small classic-BPF program assembled here (x86-64 only; other architectures
report the layer as unavailable) and installed with ``prctl(PR_SET_SECCOMP)``. A foreign
system-call ABI (x32, a 32-bit ``int 0x80``) kills the process.
"""

from __future__ import annotations

import ctypes
import os
import platform

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_KILL = 0x80000000
_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_NR, _ARCH = 0, 4


def _arg(i: int) -> int:
    return 16 + 8 * i  # low 32 bits of argument i (little-endian)


# x86-64 system call numbers
DENIED = {
    # sockets
    41: "socket", 42: "connect", 43: "accept", 49: "bind", 50: "listen", 53: "socketpair", 288: "accept4",
    # System V IPC, POSIX message queues
    29: "shmget", 30: "shmat", 31: "shmctl", 67: "shmdt", 64: "semget", 65: "semop", 66: "semctl",
    220: "semtimedop", 68: "msgget", 69: "msgsnd", 70: "msgrcv", 71: "msgctl", 240: "mq_open",
    241: "mq_unlink", 242: "mq_timedsend", 243: "mq_timedreceive", 244: "mq_notify", 245: "mq_getsetattr",
    # other processes
    101: "ptrace", 310: "process_vm_readv", 311: "process_vm_writev", 312: "kcmp", 424: "pidfd_send_signal",
    434: "pidfd_open", 438: "pidfd_getfd", 129: "rt_sigqueueinfo", 297: "rt_tgsigqueueinfo",
    # processes, programs, namespaces, mounts
    56: "clone", 57: "fork", 58: "vfork", 59: "execve", 322: "execveat", 272: "unshare", 308: "setns",
    165: "mount", 166: "umount2", 155: "pivot_root", 161: "chroot", 428: "open_tree", 429: "move_mount",
    430: "fsopen", 431: "fsconfig", 432: "fsmount", 433: "fspick", 442: "mount_setattr",
    # the file system
    85: "creat", 83: "mkdir", 84: "rmdir", 86: "link", 87: "unlink", 88: "symlink", 82: "rename",
    90: "chmod", 91: "fchmod", 92: "chown", 93: "fchown", 94: "lchown", 76: "truncate", 77: "ftruncate",
    133: "mknod", 258: "mkdirat", 259: "mknodat", 260: "fchownat", 263: "unlinkat", 264: "renameat",
    265: "linkat", 266: "symlinkat", 268: "fchmodat", 316: "renameat2", 280: "utimensat", 303: "name_to_handle_at",
    304: "open_by_handle_at", 319: "memfd_create", 188: "setxattr", 189: "lsetxattr", 190: "fsetxattr",
    # identity, the kernel
    105: "setuid", 106: "setgid", 113: "setreuid", 114: "setregid", 117: "setresuid", 119: "setresgid",
    116: "setgroups", 122: "setfsuid", 123: "setfsgid", 126: "capset", 157: "prctl", 321: "bpf",
    298: "perf_event_open", 323: "userfaultfd", 425: "io_uring_setup", 426: "io_uring_enter",
    427: "io_uring_register", 248: "add_key", 249: "request_key", 250: "keyctl", 175: "init_module",
    313: "finit_module", 176: "delete_module", 246: "kexec_load", 320: "kexec_file_load", 169: "reboot",
    163: "acct", 167: "swapon", 168: "swapoff", 170: "sethostname", 171: "setdomainname", 135: "personality",
    172: "iopl", 173: "ioperm", 159: "adjtimex", 164: "settimeofday", 227: "clock_settime", 179: "quotactl",
}
NOSYS = {435: "clone3", 437: "openat2"}  # ENOSYS: the C library falls back to the checked call
OPEN, OPENAT = 2, 257
KILL, TKILL, TGKILL = 62, 200, 234
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | __O_TMPFILE
WRITE_FLAGS = 0x1 | 0x2 | 0x40 | 0x200 | 0x400 | 0x400000


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def available() -> bool:
    return platform.machine() in ("x86_64", "AMD64") and hasattr(ctypes, "CDLL")


def program(own_pid: int) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions, for a process whose pid is ``own_pid``."""
    out: list[tuple[int, int, int, int]] = []

    def ret(value: int) -> None:
        out.append((_RET, 0, 0, value))

    out.append((_LD_W_ABS, 0, 0, _ARCH))
    out.append((_JEQ, 1, 0, _ARCH_X86_64))
    ret(_KILL)
    out.append((_LD_W_ABS, 0, 0, _NR))
    out.append((_JGE, 0, 1, _X32_BIT))
    ret(_KILL)
    for nr in sorted(DENIED):  # nr == denied: return EPERM, else fall through to the next test
        out.append((_JEQ, 0, 1, nr))
        ret(_ERRNO | _EPERM)
    for nr in sorted(NOSYS):
        out.append((_JEQ, 0, 1, nr))
        ret(_ERRNO | _ENOSYS)
    for nr, flags_arg in ((OPEN, 1), (OPENAT, 2)):
        # if nr matches: load the flags; any write flag -> EPERM; else allow
        out.append((_JEQ, 0, 4, nr))
        out.append((_LD_W_ABS, 0, 0, _arg(flags_arg)))
        out.append((_JSET, 0, 1, WRITE_FLAGS))
        ret(_ERRNO | _EPERM)
        ret(_ALLOW)
    for nr in (KILL, TKILL, TGKILL):
        # signals only to itself: the first argument must be its own pid
        out.append((_JEQ, 0, 4, nr))
        out.append((_LD_W_ABS, 0, 0, _arg(0)))
        out.append((_JEQ, 1, 0, own_pid & 0xFFFFFFFF))
        ret(_ERRNO | _EPERM)
        ret(_ALLOW)
    ret(_ALLOW)
    return out


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class Filter:
    """The filter assembled once (in the factory); ``install`` fills in the pid and loads it.

    Assembling ~200 instructions through ctypes costs milliseconds; a forked child only
    patches the three instructions that name its own pid.
    """

    _PID_PLACEHOLDER = 0x7FFFFFF0

    def __init__(self) -> None:
        if not available():
            raise OSError("seccomp filter: unsupported architecture")
        insns = program(self._PID_PLACEHOLDER)
        self._pid_slots = [i for i, ins in enumerate(insns) if ins[0] == _JEQ and ins[3] == self._PID_PLACEHOLDER]
        self._array = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
        self._prog = _Prog(len(insns), ctypes.cast(self._array, ctypes.POINTER(_Insn)))
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]

    def install(self) -> None:
        """Install in this process (irreversibly). Raises OSError when refused."""
        pid = os.getpid() & 0xFFFFFFFF
        for i in self._pid_slots:
            self._array[i].k = pid
        if self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS refused")
        if self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "seccomp filter refused")


def install() -> None:
    """Install the filter in this process (irreversibly). Raises OSError when refused."""
    Filter().install()
