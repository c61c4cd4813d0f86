"""Coding problems: what one is (`spec`), the built-in ones (`bank`), and how an answer is graded
from what the sandbox said (`grading`). The sandbox itself is interviews.execution."""
