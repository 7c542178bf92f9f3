"""Hostile and malformed submission zips, and the checks that the evaluator rejects each one."""
