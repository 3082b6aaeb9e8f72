"""The sandbox that runs candidate programs: hostile and cheating code is contained here.

Layers, from the outside in (each holds on its own; together they are the defence):

* ``policy`` — the static AST policy, checked in the main process before anything runs.
* ``pool`` / ``cgroups`` — zygote processes in empty temporary directories with scrubbed
  environments, each in its own pids and memory cgroups; replaced when they die, and never
  outliving the pool.
* ``worker`` — the zygote: its own network namespace; a fresh forked child per candidate
  for the fit, and a scoring child forked from a lean *scorer* process (which never holds
  the training targets) for the predictions that get scored.
* ``runtime`` — inside each child: rlimits, chroot into an empty directory, an unprivileged
  uid, an audit hook, restricted builtins and a guard on every attribute read.
* ``codec`` / ``protocol`` — results from children are a JSON header and raw float bytes
  (never unpickled); pickle is used only between trusted processes.
"""
