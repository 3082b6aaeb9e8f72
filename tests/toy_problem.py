"""A two-input toy problem description shared by the CLI and problem-loading tests."""

TOML = """name = "toy"
description = "A toy law."
[[inputs]]
name = "x"
description = "input"
[[inputs]]
name = "z"
description = "another input"
[output]
name = "y"
description = "output"
"""
