"""Starting schemas shared by a risky project and its safe twin: what both stand on before the lesson begins.

A twin pair starts from the same tables (that is what makes the comparison fair), so the schema and the
migrations that build it live here once; each project's 0001/0002 call them, and its own migrations from the
first lesson step on are the lesson.
"""
