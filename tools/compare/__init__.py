"""`pycrid compare`: the same CRI calls against two runtimes, and how the answers differ.

A CRI client only: it speaks to each side through the generated stubs and
nothing else, so either side may be any CRI runtime.
"""
