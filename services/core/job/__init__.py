"""The job as every service sees it: its statuses, the rules of what clients send (one copy of
each pattern and bound), its typed options and result, and its public JSON."""
