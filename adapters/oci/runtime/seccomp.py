"""The seccomp filter of a container's OCI spec, from its CRI security context.

The CRI's choices: ``RuntimeDefault`` (pycrid's default profile, below),
``Unconfined`` or no profile at all (no filter), ``Localhost`` (a JSON file in
the OCI ``linux.seccomp`` format at an absolute path), and the deprecated
``seccomp_profile_path`` strings. A privileged container is never filtered,
whatever it asks for.

The default profile has the effect of containerd's and Docker's: everything
is refused (EPERM) except a long list of ordinary system calls; the calls
that only make sense with a capability are allowed when the container's
bounding set holds it; without CAP_SYS_ADMIN, ``clone`` may not create
namespaces and ``clone3`` answers ENOSYS (its flags live in memory seccomp
cannot read, and ENOSYS makes libc fall back to ``clone``). ``socket`` is
refused for AF_ALG and AF_VSOCK. runc skips names its libseccomp does not
know, so the newest system calls can be listed safely.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeAlias

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node import clientfile
from pycrid.api.cri import api_pb2 as cri

SecurityContext: TypeAlias = cri.LinuxContainerSecurityContext | cri.LinuxSandboxSecurityContext

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
ENOSYS = 38
AF_ALG = 38
AF_VSOCK = 40
NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)
"""PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the query value."""
MAX_PROFILE_BYTES = clientfile.MIB
ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
OCI_SECCOMP_KEYS = (
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
)

# System calls every container may make, by what they are for.
ALLOWED_SYSCALLS: dict[str, str] = {
    "files": """
        access chdir chmod chown chown32 close close_range copy_file_range creat dup dup2
        dup3 faccessat faccessat2 fadvise64 fadvise64_64 fallocate fchdir fchmod fchmodat
        fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync flock fstat fstat64
        fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futimesat getcwd getdents
        getdents64 lchown lchown32 link linkat _llseek lseek lstat lstat64 mkdir mkdirat
        mknod mknodat name_to_handle_at newfstatat open openat openat2 pread64 preadv
        preadv2 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv rename
        renameat renameat2 rmdir sendfile sendfile64 splice stat stat64 statfs statfs64
        statx symlink symlinkat sync sync_file_range syncfs tee truncate truncate64 umask
        unlink unlinkat utime utimensat utimensat_time64 utimes vmsplice write writev
        cachestat listmount statmount
    """,
    "extended attributes": """
        fgetxattr flistxattr fremovexattr fsetxattr getxattr getxattrat lgetxattr listxattr
        listxattrat llistxattr lremovexattr lsetxattr removexattr removexattrat setxattr
        setxattrat
    """,
    "waiting for events": """
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
        epoll_wait epoll_wait_old eventfd eventfd2 fanotify_mark inotify_add_watch
        inotify_init inotify_init1 inotify_rm_watch poll ppoll ppoll_time64 pselect6
        pselect6_time64 select _newselect signalfd signalfd4 timerfd_create timerfd_gettime
        timerfd_gettime64 timerfd_settime timerfd_settime64
    """,
    "asynchronous and device I/O": """
        io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup
        io_submit ioctl ioprio_get ioprio_set
    """,
    "processes and threads": """
        execve execveat exit exit_group fork vfork wait4 waitid waitpid getpid getppid gettid
        getpgid getpgrp setpgid getsid setsid getpriority setpriority getrlimit setrlimit
        prlimit64 ugetrlimit getrusage prctl capget capset seccomp landlock_add_rule
        landlock_create_ruleset landlock_restrict_self pidfd_open pidfd_send_signal
        process_mrelease rseq set_tid_address get_robust_list set_robust_list
        get_thread_area set_thread_area getcpu uname sysinfo times restart_syscall
        lsm_get_self_attr lsm_list_modules lsm_set_self_attr uretprobe map_shadow_stack
        futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake membarrier
        getrandom
    """,
    "credentials": """
        getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getresgid
        getresgid32 getresuid getresuid32 getuid getuid32 setfsgid setfsgid32 setfsuid
        setfsuid32 setgid setgid32 setgroups setgroups32 setregid setregid32 setresgid
        setresgid32 setresuid setresuid32 setreuid setreuid32 setuid setuid32
    """,
    "scheduling": """
        sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
        sched_get_priority_min sched_getscheduler sched_rr_get_interval
        sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
        sched_setscheduler sched_yield
    """,
    "memory": """
        brk madvise memfd_create memfd_secret mincore mlock mlock2 mlockall mmap mmap2
        mprotect mremap mseal msync munlock munlockall munmap pkey_alloc pkey_free
        pkey_mprotect remap_file_pages
    """,
    "signals": """
        kill tgkill tkill pause rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
        rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
        sigaltstack sigprocmask sigreturn
    """,
    "clocks and timers": """
        adjtimex alarm clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
        clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 getitimer
        setitimer gettimeofday nanosleep time timer_create timer_delete timer_getoverrun
        timer_gettime timer_gettime64 timer_settime timer_settime64
    """,
    "System V IPC and message queues": """
        ipc msgctl msgget msgrcv msgsnd semctl semget semop semtimedop semtimedop_time64
        shmat shmctl shmdt shmget mq_getsetattr mq_notify mq_open mq_timedreceive
        mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink
    """,
    "sockets and pipes": """
        accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom
        recvmmsg recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto setsockopt shutdown
        socketcall socketpair pipe pipe2
    """,
    # Safe since kernel 4.8, which closed the seccomp bypass through ptrace.
    "tracing own children": "process_vm_readv process_vm_writev ptrace",
}

CAPABILITY_SYSCALLS: dict[str, str] = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": """
        bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
        mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
        sethostname setns syslog umount umount2 unshare
    """,
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# Architectures a filter must cover (the native one and those its binaries can run),
# and the system calls only that architecture has; keys are `uname -m` names.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "i686": ("SCMP_ARCH_X86",),
    "aarch64": ("SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"),
    "armv7l": ("SCMP_ARCH_ARM",),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "s390x": ("SCMP_ARCH_S390", "SCMP_ARCH_S390X"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
    "loongarch64": ("SCMP_ARCH_LOONGARCH64",),
    "mips64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32"),
}
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "386": "i686"}
ARM_SYSCALLS = "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"
ARCH_SYSCALLS: dict[str, str] = {
    "x86_64": "arch_prctl modify_ldt",
    "i686": "modify_ldt",
    "aarch64": ARM_SYSCALLS,
    "armv7l": ARM_SYSCALLS,
    "ppc64le": "sync_file_range2 swapcontext",
    "s390x": "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    "riscv64": "riscv_flush_icache riscv_hwprobe",
}


def _allow(names: Iterable[str], *args: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": list(names), "action": ALLOW}
    if args:
        rule["args"] = list(args)
    return rule


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def default_profile(bounding_caps: Iterable[str], arch: str) -> dict[str, Any]:
    """pycrid's RuntimeDefault filter for a process with this bounding set on ``arch``."""
    arch = ARCH_ALIASES.get(arch, arch)
    caps = set(bounding_caps)
    names = [name for group in ALLOWED_SYSCALLS.values() for name in group.split()]
    syscalls = [_allow(names)]
    # One condition per rule: runc turns several conditions on one argument into
    # separate rules (an OR), so "not AF_ALG and not AF_VSOCK" is three ranges.
    syscalls += [
        _allow(["socket"], _arg(0, "SCMP_CMP_LT", AF_ALG)),
        _allow(["socket"], _arg(0, "SCMP_CMP_EQ", AF_ALG + 1)),
        _allow(["socket"], _arg(0, "SCMP_CMP_GT", AF_VSOCK)),
    ]
    syscalls += [_allow(["personality"], _arg(0, "SCMP_CMP_EQ", p)) for p in PERSONALITIES]
    if arch in ARCH_SYSCALLS:
        syscalls.append(_allow(ARCH_SYSCALLS[arch].split()))
    syscalls += [_allow(calls.split()) for cap, calls in CAPABILITY_SYSCALLS.items() if cap in caps]
    if "CAP_SYS_ADMIN" not in caps:
        flags_arg = 1 if arch == "s390x" else 0  # s390 swaps clone's first two arguments
        syscalls.append(_allow(["clone"], _arg(flags_arg, "SCMP_CMP_MASKED_EQ", NAMESPACE_FLAGS)))
        syscalls.append({"names": ["clone3"], "action": ERRNO, "errnoRet": ENOSYS})
    return {
        "defaultAction": ERRNO,
        "architectures": list(ARCHITECTURES.get(arch, ())),
        "syscalls": syscalls,
    }


def profile_choice(security: SecurityContext) -> tuple[str, str]:
    """("runtime/default" | "unconfined" | "localhost", path) from the field or its
    deprecated string form; an unset profile is unconfined, as the CRI defines it."""
    if security.HasField("seccomp"):
        profile = security.seccomp
        kind = profile.profile_type
        if kind != cri.SecurityProfile.Localhost and profile.localhost_ref:
            raise InvalidArgument("seccomp localhost_ref is only for Localhost profiles")
        if kind == cri.SecurityProfile.RuntimeDefault:
            return "runtime/default", ""
        if kind == cri.SecurityProfile.Unconfined:
            return "unconfined", ""
        if kind == cri.SecurityProfile.Localhost:
            return "localhost", profile.localhost_ref
        raise InvalidArgument(f"unknown seccomp profile type {kind}")
    path = security.seccomp_profile_path
    if path in ("runtime/default", "docker/default"):
        return "runtime/default", ""
    if path in ("", "unconfined"):
        return "unconfined", ""
    if path.startswith("localhost/"):
        return "localhost", path.removeprefix("localhost/")
    raise InvalidArgument(f"unknown seccomp profile {path[:64]!r}")


def seccomp_for(
    security: SecurityContext, bounding_caps: Iterable[str], arch: str
) -> dict[str, Any] | None:
    """The spec's ``linux.seccomp`` for a security context; None means no filter."""
    if security.privileged:
        return None
    kind, path = profile_choice(security)
    if kind == "runtime/default":
        return default_profile(bounding_caps, arch)
    if kind == "localhost":
        return load_profile(path)
    return None


def load_profile(path: str) -> dict[str, Any]:
    """A Localhost profile: an OCI ``linux.seccomp`` object in a JSON file."""
    data = clientfile.read_regular(path, MAX_PROFILE_BYTES, f"seccomp profile {path[:64]!r}")
    try:
        profile = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"seccomp profile {path[:64]} is not JSON: {e}") from None
    return validate_profile(profile, path)


def validate_profile(profile: Any, path: str = "") -> dict[str, Any]:
    """The profile's OCI fields, after checking the ones runc would choke on."""
    where = f"seccomp profile {path[:64]}".strip()
    if not isinstance(profile, dict):
        raise InvalidArgument(f"{where} is not a JSON object")
    if profile.get("defaultAction") not in ACTIONS:
        raise InvalidArgument(f"{where} has no valid defaultAction")
    syscalls = profile.get("syscalls")
    if syscalls is None:
        syscalls = []
    if not isinstance(syscalls, list):
        raise InvalidArgument(f"{where}: syscalls is not a list")
    for rule in syscalls:
        if not isinstance(rule, dict) or rule.get("action") not in ACTIONS:
            raise InvalidArgument(f"{where}: a syscalls entry has no valid action")
        names = rule.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidArgument(f"{where}: a syscalls entry has no list of names")
    return {key: profile[key] for key in OCI_SECCOMP_KEYS if key in profile}
