"""The sandbox that runs candidate programs: hostile and cheating code is contained here.

Layers, from the outside in (README's Safety section says which one holds what alone):

* ``policy`` — the static AST policy, checked in the main process before anything runs; the
  syntax it accepts is an allowlist of reviewed forms.
* ``pool`` / ``cgroups`` — zygote processes (``worker``) in empty temporary directories with
  scrubbed environments, each in its own pids and memory cgroups; replaced when they die,
  and never outliving the pool.
* ``worker`` / ``isolation`` — the zygote: network, mount, IPC and PID namespaces (inside a
  user namespace without root) and an empty read-only root. It forks the ``factory`` before
  it receives the targets, then runs jobs through trusted drivers that talk to candidate
  processes; it never executes candidate code itself.
* ``factory`` — forks one process per candidate session (the fit-time one, then a fresh
  one for the scored predictions), with descriptors of its own, and confines it.
* ``runtime`` / ``seccomp`` / ``guard`` — inside each candidate process: rlimits, chroot, an
  unprivileged uid, a seccomp allowlist of system calls, an audit hook with no switch, and
  the attribute guard on every attribute read, compiled in by the zygote.
* ``messages`` / ``protocol`` — typed messages; what comes back from a candidate process is
  a length-prefixed frame (a JSON header, then raw float bytes) decoded with hard limits,
  never unpickled; pickle is used only between trusted processes.
"""
