"""eqforge: LLM-driven scientific equation discovery."""
