"""Code that runs *inside* a sandboxed candidate process, next to untrusted code.

Nothing here is trusted by the rest of eqforge: these runners only turn a ``messages.Call``
into a ``messages.Reply`` by calling the candidate's function on the inputs the process was
started with. They never see targets (except an analysis job's own input arrays), never
compute a score, and import nothing but numpy (the factory imports them before forking).
"""
